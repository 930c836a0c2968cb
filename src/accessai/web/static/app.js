// The dashboard: sign-in, balance, usage chart, AI calls, checkout, API keys.
import { api, ApiError, collectToken, forgetToken, signInUrl, signedIn } from "./api.js";
import { drawChart, fillDays } from "./chart.js";

const $ = (id) => document.getElementById(id);
const CHART_DAYS = 14;
const CHECKOUT_POLL_MS = 1000;
const CHECKOUT_POLL_MAX = 45; // bounded: about 45 seconds, then say so

const money = (cents, currency) =>
  new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() }).format(cents / 100);
const when = (iso) =>
  new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const REASONS = {
  signup_bonus: "Welcome bonus",
  stripe_payment: "Credits purchased",
  stripe_refund: "Refund",
  stripe_dispute: "Dispute",
  summarize: "Summarize",
  analyze: "Analyze",
  chat: "Chat",
  ai_refund: "AI refund",
};
const reasonLabel = (reason) => REASONS[reason] || reason.replaceAll("_", " ");

function node(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value);
  }
  element.append(...children.filter((c) => c !== null && c !== undefined));
  return element;
}

function show(element, visible) {
  element.hidden = !visible;
}

function say(element, text) {
  element.textContent = text;
}

// --- Sign-in and sign-out -------------------------------------------------------

function showSignedOut(message = "") {
  show($("loading"), false);
  show($("dashboard"), false);
  show($("account"), false);
  show($("signed-out"), true);
  say($("signin-notice"), message);
}

async function startSignIn() {
  const button = $("sign-in");
  button.disabled = true;
  try {
    // Come back to the same address, so a return from Checkout keeps its query.
    const returnTo = window.location.pathname + window.location.search;
    window.location.assign(await signInUrl(returnTo));
  } catch (error) {
    say($("signin-notice"), error instanceof ApiError ? error.message : "Sign-in is unavailable right now.");
    button.disabled = false;
  }
}

function signOut(message = "You are signed out.") {
  forgetToken();
  $("ai-result").replaceChildren();
  $("keys").replaceChildren();
  show($("new-key"), false);
  $("new-key-value").value = "";
  showSignedOut(message);
  $("sign-in").focus();
}

// Any call that finds the token expired sends the user back to sign in.
async function call(path, options) {
  try {
    return await api(path, options);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && signedIn()) {
      signOut("Your session has ended. Sign in again to continue.");
    }
    throw error;
  }
}

// --- Balance, transactions, chart -----------------------------------------------

let lastBalance = null;

function renderBalance(data) {
  lastBalance = data.balance;
  const balance = $("balance");
  balance.textContent = String(data.balance);
  balance.dataset.balance = String(data.balance);
  const hold = $("hold-notice");
  show(hold, data.on_hold);
  if (data.on_hold) say(hold, `Spending is paused: the account owes ${data.debt} credits after a refund or dispute.`);
  const rows = data.transactions.map((tx) =>
    node(
      "tr",
      {},
      node("td", {}, when(tx.created_at)),
      node("td", {}, reasonLabel(tx.reason)),
      node("td", { class: `num ${tx.amount < 0 ? "neg" : "pos"}` }, tx.amount > 0 ? `+${tx.amount}` : String(tx.amount)),
      node("td", { class: "num" }, String(tx.balance_after)),
    ),
  );
  if (rows.length === 0) rows.push(node("tr", {}, node("td", { colspan: "4", class: "muted" }, "No transactions yet.")));
  $("transactions").replaceChildren(...rows);
}

async function loadBalance() {
  const data = await call("/credits/balance");
  renderBalance(data);
  return data;
}

let chartSeries = null;

async function loadUsage() {
  const data = await call(`/usage?limit=1&days=${CHART_DAYS}`);
  chartSeries = fillDays(data.totals.per_day, CHART_DAYS);
  drawChart($("usage-chart"), chartSeries);
  const spent = data.totals.credits;
  say($("chart-summary"), `${spent} credits spent on ${data.totals.requests} requests in the last ${CHART_DAYS} days.`);
}

async function refreshAll() {
  await Promise.all([loadBalance(), loadUsage()]);
}

// --- AI ---------------------------------------------------------------------------

let rateLimitTimer = null;

function aiButtons(disabled) {
  for (const id of ["summarize", "analyze"]) $(id).disabled = disabled;
}

function showAiError(...content) {
  const box = $("ai-error");
  box.replaceChildren(...content);
  show(box, content.length > 0);
}

function describeError(error) {
  if (!(error instanceof ApiError)) return [node("p", {}, "Could not reach the server. Check your connection and try again.")];
  const body = error.body;
  if (error.code === "insufficient_credits") {
    const buy = node("button", { type: "button", class: "button primary small", id: "buy-more" }, "Buy credits");
    buy.addEventListener("click", () => $("buy-title").focus());
    return [
      node("p", {}, node("strong", {}, "Not enough credits. "), `This needs ${body.required} credits and your balance is ${body.balance}.`),
      buy,
    ];
  }
  if (error.code === "rate_limited") {
    const wait = Math.max(1, Math.ceil(Number(body.retry_after) || 1));
    aiButtons(true);
    clearTimeout(rateLimitTimer);
    rateLimitTimer = setTimeout(() => aiButtons(false), wait * 1000);
    return [node("p", {}, node("strong", {}, "Too many requests. "), `Please wait ${wait} second${wait === 1 ? "" : "s"} and try again.`)];
  }
  if (error.code === "validation_error") {
    const details = Array.isArray(body.details) ? body.details : [];
    const list = node("ul", {}, ...details.map((d) => node("li", {}, `${d.field === "text" ? "Text" : d.field}: ${d.message}`)));
    return [node("p", {}, node("strong", {}, "Please check the text. ")), details.length ? list : node("p", {}, error.message)];
  }
  if (error.code === "account_on_hold") return [node("p", {}, node("strong", {}, "Spending is paused. "), error.message)];
  return [node("p", {}, error.message)];
}

function renderSummary(data) {
  return [
    node("h3", {}, "Summary"),
    node("p", { class: "summary-text" }, data.summary),
  ];
}

function renderAnalysis(data) {
  const facts = [
    ["Sentiment", `${data.sentiment.label} (${data.sentiment.score.toFixed(2)})`],
    ["Words", String(data.word_count)],
    ["Sentences", String(data.sentence_count)],
    ["Reading time", `${data.reading_time_seconds} s`],
    ["Keywords", data.keywords.join(", ") || "—"],
  ];
  const list = node("dl", { class: "facts" });
  for (const [term, value] of facts) list.append(node("dt", {}, term), node("dd", {}, value));
  return [node("h3", {}, "Analysis"), list];
}

async function runAi(kind) {
  const text = $("ai-text").value;
  showAiError();
  aiButtons(true);
  let limited = false;
  $("ai-result").setAttribute("aria-busy", "true");
  try {
    const data = await call(`/api/${kind}`, { method: "POST", body: { text } });
    const content = kind === "summarize" ? renderSummary(data) : renderAnalysis(data);
    content.push(node("p", { class: "charged muted" }, `Charged ${data.credits_charged} credits · balance ${data.balance}`));
    $("ai-result").replaceChildren(node("div", { class: `result-box ${kind}`, dataset: { kind } }, ...content));
    await refreshAll();
  } catch (error) {
    $("ai-result").replaceChildren();
    showAiError(...describeError(error));
    limited = error instanceof ApiError && error.code === "rate_limited";
    if (signedIn()) await loadBalance().catch(() => {});
  } finally {
    $("ai-result").removeAttribute("aria-busy");
    if (!limited) aiButtons(false);
  }
}

// --- Buying -----------------------------------------------------------------------

async function loadPackages() {
  const data = await call("/payments/packages");
  const items = data.packages.map((pkg) => {
    const button = node(
      "button",
      { type: "button", class: "button primary", dataset: { package: pkg.id } },
      `Buy ${pkg.name}`,
    );
    button.addEventListener("click", () => buy(pkg.id, button));
    return node(
      "li",
      { class: "package" },
      node("div", { class: "package-name" }, node("strong", {}, pkg.name), node("span", { class: "muted" }, `${pkg.credits} credits`)),
      node("span", { class: "price-tag" }, money(pkg.price_cents, pkg.currency)),
      button,
    );
  });
  $("packages").replaceChildren(...items);
}

async function buy(packageId, button) {
  const box = $("buy-error");
  show(box, false);
  button.disabled = true;
  try {
    const data = await call("/payments/checkout", { method: "POST", body: { package: packageId } });
    // A top-level navigation to Stripe Checkout; it sends the browser back to /?checkout=...
    window.location.assign(data.checkout_url);
  } catch (error) {
    say(box, error instanceof ApiError ? error.message : "Could not start the checkout.");
    show(box, true);
    button.disabled = false;
  }
}

// After Checkout, the webhook may land a moment later: poll the balance until
// the ledger shows this session's purchase, for a bounded time.
async function awaitPurchase(sessionId) {
  const status = $("checkout-status");
  say(status, "Payment received. Waiting for the credits to arrive…");
  for (let attempt = 0; attempt < CHECKOUT_POLL_MAX; attempt += 1) {
    const data = await loadBalance();
    const row = data.transactions.find((tx) => tx.reference === sessionId && tx.amount > 0);
    if (row) {
      say(status, `Thank you! ${row.amount} credits were added to your balance.`);
      await loadUsage();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, CHECKOUT_POLL_MS));
  }
  say(status, "Your payment is being processed. The credits will appear shortly; press Refresh to check.");
}

function handleCheckoutReturn() {
  const params = new URLSearchParams(window.location.search);
  const outcome = params.get("checkout");
  const sessionId = params.get("session_id");
  // Drop the query so a later reload or sign-in does not repeat this.
  window.history.replaceState(null, "", window.location.pathname);
  if (outcome === "cancelled") say($("checkout-status"), "Checkout was cancelled; nothing was charged.");
  if (outcome === "success" && sessionId) awaitPurchase(sessionId).catch(() => {});
}

// --- API keys ----------------------------------------------------------------------

async function loadKeys() {
  const keys = await call("/api-keys");
  const items = keys.map((key) => {
    const revoke = node("button", { type: "button", class: "button danger small" }, "Revoke");
    revoke.setAttribute("aria-label", `Revoke key ${key.name}`);
    revoke.addEventListener("click", () => revokeKey(key));
    const used = key.last_used_at ? `last used ${when(key.last_used_at)}` : "never used";
    return node(
      "li",
      { class: "key", dataset: { keyId: key.id } },
      node("div", {}, node("strong", {}, key.name), node("code", {}, `${key.prefix}…`), node("span", { class: "muted small-text" }, `created ${when(key.created_at)} · ${used}`)),
      revoke,
    );
  });
  if (items.length === 0) items.push(node("li", { class: "muted" }, "No API keys yet."));
  $("keys").replaceChildren(...items);
}

async function createKey(event) {
  event.preventDefault();
  const name = $("key-name").value.trim();
  const status = $("keys-status");
  if (!name) {
    say(status, "Give the key a name first.");
    $("key-name").focus();
    return;
  }
  try {
    const created = await call("/api-keys", { method: "POST", body: { name } });
    $("key-name").value = "";
    $("new-key-value").value = created.key;
    show($("new-key"), true);
    say(status, `Key "${created.name}" created. Copy it now: it is shown only once.`);
    $("new-key-value").focus();
    $("new-key-value").select();
    await loadKeys();
  } catch (error) {
    say(status, error instanceof ApiError ? error.message : "Could not create the key.");
  }
}

async function copyKey() {
  const input = $("new-key-value");
  try {
    await navigator.clipboard.writeText(input.value);
    say($("keys-status"), "Key copied to the clipboard.");
  } catch {
    input.select();
    say($("keys-status"), "Press Ctrl+C (or ⌘C) to copy the selected key.");
  }
}

function dismissKey() {
  $("new-key-value").value = "";
  show($("new-key"), false);
  say($("keys-status"), "The key is hidden now and cannot be shown again.");
  $("key-name").focus();
}

async function revokeKey(key) {
  try {
    await call(`/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
    say($("keys-status"), `Key "${key.name}" revoked.`);
    await loadKeys();
    $("key-name").focus();
  } catch (error) {
    say($("keys-status"), error instanceof ApiError ? error.message : "Could not revoke the key.");
  }
}

// --- Start --------------------------------------------------------------------------

async function showDashboard(user) {
  show($("loading"), false);
  show($("signed-out"), false);
  say($("user-email"), user.email);
  show($("account"), true);
  show($("dashboard"), true);
  await Promise.all([refreshAll(), loadPackages(), loadKeys()]);
  document.body.dataset.ready = "true";
}

function wire() {
  $("sign-in").addEventListener("click", startSignIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => refreshAll().catch(() => {}));
  $("ai-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const kind = event.submitter && event.submitter.value === "analyze" ? "analyze" : "summarize";
    runAi(kind);
  });
  $("ai-text").addEventListener("input", () => {
    const length = $("ai-text").value.trim().length;
    say($("ai-count"), `${length} character${length === 1 ? "" : "s"}`);
  });
  $("key-form").addEventListener("submit", createKey);
  // Redraw the chart at its new size after a rotation or resize.
  new ResizeObserver(() => {
    if (chartSeries && !$("dashboard").hidden) drawChart($("usage-chart"), chartSeries);
  }).observe($("usage-chart"));
  $("copy-key").addEventListener("click", copyKey);
  $("dismiss-key").addEventListener("click", dismissKey);
}

async function main() {
  wire();
  const params = new URLSearchParams(window.location.search);
  let user = null;
  try {
    user = await collectToken();
  } catch {
    user = null;
  }
  if (user === null) {
    const back = params.get("checkout") === "success"
      ? "Payment complete. Sign in again to see your new credits (this page keeps no sign-in across visits)."
      : "";
    showSignedOut(back);
    document.body.dataset.ready = "true";
    return;
  }
  await showDashboard(user);
  if (params.has("checkout")) handleCheckoutReturn();
}

main();
