// The API client. The access token lives in this module's memory only: never
// in localStorage, sessionStorage, a cookie or a URL, and it is never logged.
let accessToken = null;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `Request failed (${status})`);
    this.status = status;
    this.body = body || {};
    this.code = this.body.error || "http_error";
  }
}

export function signedIn() {
  return accessToken !== null;
}

export function forgetToken() {
  accessToken = null;
}

async function readBody(response) {
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (accessToken !== null) headers.Authorization = `Bearer ${accessToken}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const data = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// After the provider sends the browser back, the sign-in cookie lets this tab
// collect its token once (within two minutes). Returns the user, or null.
export async function collectToken() {
  const response = await fetch("/auth/token", {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  });
  if (response.status === 401) return null;
  const data = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, data);
  accessToken = data.access_token;
  return data.user;
}

// Ask whether sign-in is available before leaving the page, so a 503
// ("not configured") is shown here rather than as a bare JSON page.
export async function signInUrl(returnTo) {
  const url = `/auth/google?return_to=${encodeURIComponent(returnTo)}`;
  const response = await fetch(url, { redirect: "manual", credentials: "same-origin", cache: "no-store" });
  if (response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400)) return url;
  throw new ApiError(response.status, await readBody(response));
}
