// A local OpenID Connect provider that stands in for Google in AccessAI's tests.
//
// oauth2-mock-server (v8) supplies discovery, /authorize, /token, /jwks and
// /userinfo, and signs RS256 tokens with a key it generates. By itself it is
// far more lenient than Google, so this launcher wraps its express app with
// the checks a real provider makes and the library skips (see README.md next
// to this file for the full list):
//   - /authorize: known client_id, a registered redirect_uri (when any are
//     registered), response_type=code, an "openid" scope, a queued login.
//   - /token: client authentication (client_secret_basic or _post), code known,
//     unused, bound to the same client and redirect_uri, PKCE verifier
//     required and checked whenever a challenge was sent. Errors use the
//     RFC 6749 codes (invalid_client 401, invalid_grant 400).
// The library's hooks then put the queued login's claims into the tokens and
// apply the negative-test knobs (expired, wrong aud/iss, foreign key, nonce).
//
// A control API under /__control lets the Python side queue the next login.
//
// Usage: node server.mjs [--port 0] [--host 127.0.0.1] [--client-id ID]
//          [--client-secret SECRET] [--redirect-uri URI ...] [--exit-on-stdin-close]
// Prints one JSON line {"event":"ready","issuer":...,"port":...} on stdout
// once it accepts connections.

import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import express from 'express';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'client-id': { type: 'string', default: 'accessai-test-client' },
    'client-secret': { type: 'string', default: 'accessai-test-secret' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
});

const CLIENT_ID = args['client-id'];
const CLIENT_SECRET = args['client-secret'];
const REDIRECT_URIS = new Set(args['redirect-uri']);

// Fields a queued login may carry; anything else is a typo in a test and is refused.
const LOGIN_FIELDS = {
  sub: 'string',
  email: 'string',
  email_verified: 'boolean',
  name: 'string',
  extra_claims: 'object',
  expired: 'boolean',
  audience: 'string',
  issuer: 'string',
  unknown_kid: 'boolean',
  bad_signature: 'boolean',
  nonce: 'string',
  omit_nonce: 'boolean',
  token_error: 'string',
  authorize_error: 'string',
};

// ---- state (one test process drives one provider, so plain maps suffice) ----

const pendingLogins = []; // FIFO: each successful /authorize takes the first
const codes = new Map(); // code -> { login, clientId, redirectUri, scope, challenge, method, used, accessTokens }
const accessTokens = new Map(); // access_token -> login, for /userinfo
const requestLog = { authorize: [], token: [], userinfo: [] };

function resetState() {
  pendingLogins.length = 0;
  codes.clear();
  accessTokens.clear();
  for (const list of Object.values(requestLog)) list.length = 0;
}

// ---- keys ----

const issuer = new OAuth2Issuer();
const service = new OAuth2Service(issuer);
const signingKey = await issuer.keys.generate('RS256');

// A second RSA key that is never published in /jwks: tokens signed with it
// must be rejected by the relying party.
const rogueKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const ROGUE_KID = `rogue-${randomBytes(8).toString('hex')}`;

// The library signs asynchronously before emitting beforeResponse, and
// beforeResponse listeners run synchronously, so re-signing there has to be
// synchronous: node:crypto's RSA sign is (RS256 = RSASSA-PKCS1-v1_5 + SHA-256).
function resignWithRogueKey(jwt, kid) {
  const [encodedHeader, encodedPayload] = jwt.split('.');
  const header = { ...JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8')), kid };
  const signingInput = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${encodedPayload}`;
  const signature = sign('sha256', Buffer.from(signingInput), rogueKey);
  return `${signingInput}.${signature.toString('base64url')}`;
}

// ---- helpers ----

function oauthError(res, status, error, description, headers = {}) {
  res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache', ...headers });
  res.status(status).json({ error, error_description: description });
}

// RFC 6749 2.3.1: client_secret_basic credentials are form-urlencoded before base64.
function parseBasicAuth(header) {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const unescape = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
  try {
    return { id: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}

function pkceMatches(verifier, challenge, method) {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return false;
  const computed = method === 'S256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
  return computed === challenge;
}

function userClaims(login) {
  const claims = { sub: login.sub, email: login.email, email_verified: login.email_verified };
  if (login.name !== undefined) claims.name = login.name;
  return { ...claims, ...(login.extra_claims ?? {}) };
}

function validateLogin(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'body must be a JSON object';
  for (const [key, value] of Object.entries(body)) {
    const expected = LOGIN_FIELDS[key];
    if (expected === undefined) return `unknown field '${key}'`;
    const actual = value === null || Array.isArray(value) ? 'invalid' : typeof value;
    if (actual !== expected) return `field '${key}' must be a ${expected}`;
  }
  if (body.sub === undefined || body.email === undefined) return "fields 'sub' and 'email' are required";
  return undefined;
}

// ---- library hooks ----

// /authorize has already been checked by authorizeGuard; bind the code it
// issues to the login it consumes, or turn the redirect into an error one.
service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code === null) return; // the library already put an error on the redirect
  const login = pendingLogins.shift();
  if (login.authorize_error !== undefined) {
    redirect.url.searchParams.delete('code');
    redirect.url.searchParams.set('error', login.authorize_error);
    return;
  }
  const q = req.query;
  codes.set(code, {
    login,
    clientId: q.client_id,
    redirectUri: q.redirect_uri,
    scope: q.scope,
    challenge: q.code_challenge,
    method: q.code_challenge ? (q.code_challenge_method ?? 'plain') : undefined,
    used: false,
    accessTokens: [],
  });
});

// Fires for the access token and then the ID token of each /token call. The
// library gives the ID token aud (=client_id) and nonce, the access token a scope.
service.on('beforeTokenSigning', (token, req) => {
  const record = codes.get(req.body.code);
  if (record === undefined) return;
  const { login } = record;
  const isIdToken = !('scope' in token.payload);
  if (!isIdToken) {
    Object.assign(token.payload, { sub: login.sub, scope: record.scope });
    delete token.payload.amr;
    return;
  }
  const { extra_claims: extraClaims, ...identity } = login;
  Object.assign(token.payload, userClaims(identity), { azp: CLIENT_ID });
  // A token minted for another client names that client in both aud and azp.
  if (login.audience !== undefined) Object.assign(token.payload, { aud: login.audience, azp: login.audience });
  if (login.issuer !== undefined) token.payload.iss = login.issuer;
  if (login.expired) {
    const now = Math.floor(Date.now() / 1000);
    // An hour past expiry: beyond any clock-skew leeway a client allows.
    Object.assign(token.payload, { iat: now - 7200, nbf: now - 7200, exp: now - 3600 });
  }
  if (login.omit_nonce) delete token.payload.nonce;
  else if (login.nonce !== undefined) token.payload.nonce = login.nonce;
  Object.assign(token.payload, extraClaims ?? {}); // last, so a test can override anything
});

service.on('beforeResponse', (response, req) => {
  const record = codes.get(req.body.code);
  if (record === undefined || response.statusCode !== 200) return;
  const { login } = record;
  if (login.token_error !== undefined) {
    response.statusCode = 400;
    response.body = { error: login.token_error, error_description: 'error requested by the test' };
    return;
  }
  response.body.scope = record.scope;
  delete response.body.refresh_token; // Google sends one only for access_type=offline; no refresh grant here
  if (login.unknown_kid) response.body.id_token = resignWithRogueKey(response.body.id_token, ROGUE_KID);
  else if (login.bad_signature) response.body.id_token = resignWithRogueKey(response.body.id_token, signingKey.kid);
  accessTokens.set(response.body.access_token, login);
  record.accessTokens.push(response.body.access_token);
});

service.on('beforeUserinfo', (response, req) => {
  const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  const login = match ? accessTokens.get(match[1]) : undefined;
  requestLog.userinfo.push({ authenticated: login !== undefined });
  if (login === undefined) {
    response.statusCode = 401;
    response.body = { error: 'invalid_token', error_description: 'unknown or revoked access token' };
    return;
  }
  response.body = userClaims(login);
});

// ---- guards in front of the library ----

function authorizeGuard(req, res, next) {
  const q = req.query;
  requestLog.authorize.push({ ...q });
  if (q.client_id !== CLIENT_ID) return oauthError(res, 401, 'invalid_client', 'unknown client_id');
  if (typeof q.redirect_uri !== 'string') return oauthError(res, 400, 'invalid_request', 'redirect_uri required');
  if (REDIRECT_URIS.size > 0 && !REDIRECT_URIS.has(q.redirect_uri)) {
    return oauthError(res, 400, 'redirect_uri_mismatch', 'redirect_uri is not registered');
  }
  if (q.response_type !== 'code') return next(); // the library redirects with unsupported_response_type
  if (typeof q.scope !== 'string' || !q.scope.split(' ').includes('openid')) {
    return oauthError(res, 400, 'invalid_scope', "scope must include 'openid'");
  }
  if (pendingLogins.length === 0) {
    return oauthError(res, 409, 'no_login_queued', 'the test must queue a login (next_login) before /authorize');
  }
  return next();
}

function tokenGuard(req, res, next) {
  const body = req.body ?? {};
  const basic = parseBasicAuth(req.headers.authorization);
  const entry = {
    grant_type: body.grant_type,
    client_auth: basic ? 'client_secret_basic' : body.client_secret !== undefined ? 'client_secret_post' : 'none',
    has_code_verifier: typeof body.code_verifier === 'string',
    redirect_uri: body.redirect_uri,
    status: undefined,
    error: undefined,
  };
  requestLog.token.push(entry);
  res.on('finish', () => {
    entry.status = res.statusCode;
  });
  const fail = (status, error, description, headers) => {
    entry.error = error;
    return oauthError(res, status, error, description, headers);
  };

  // Client authentication comes first (RFC 6749 3.2.1).
  if (basic && body.client_secret !== undefined) {
    return fail(400, 'invalid_request', 'more than one client authentication method');
  }
  const client = basic ?? { id: body.client_id, secret: body.client_secret };
  if (client.id !== CLIENT_ID || client.secret !== CLIENT_SECRET) {
    const headers = basic ? { 'WWW-Authenticate': 'Basic realm="oidc-standin"' } : {};
    return fail(401, 'invalid_client', 'client authentication failed', headers);
  }
  if (body.grant_type !== 'authorization_code') {
    return fail(400, 'unsupported_grant_type', 'only authorization_code is supported');
  }
  if (typeof body.code !== 'string') return fail(400, 'invalid_request', 'code required');

  const record = codes.get(body.code);
  if (record === undefined) return fail(400, 'invalid_grant', 'unknown authorization code');
  if (record.used) {
    // RFC 6749 4.1.2: a replayed code SHOULD revoke what it issued before.
    for (const token of record.accessTokens) accessTokens.delete(token);
    return fail(400, 'invalid_grant', 'authorization code already used');
  }
  record.used = true;
  if (record.clientId !== client.id) return fail(400, 'invalid_grant', 'code was issued to another client');
  if (body.redirect_uri !== record.redirectUri) return fail(400, 'invalid_grant', 'redirect_uri does not match');
  if (record.challenge !== undefined) {
    if (typeof body.code_verifier !== 'string') return fail(400, 'invalid_grant', 'code_verifier required');
    if (!pkceMatches(body.code_verifier, record.challenge, record.method)) {
      return fail(400, 'invalid_grant', 'code_verifier does not match code_challenge');
    }
  } else if (body.code_verifier !== undefined) {
    return fail(400, 'invalid_grant', 'code_verifier sent but no code_challenge was');
  }
  return next();
}

// Advertise what this stand-in actually does, as Google's document does,
// instead of the library's "none" client authentication, extra grants and
// revoke/introspect/end-session endpoints that accept anything.
function patchDiscovery(_req, res, next) {
  const json = res.json.bind(res);
  res.json = (doc) =>
    json({
      ...doc,
      revocation_endpoint: undefined,
      introspection_endpoint: undefined,
      end_session_endpoint: undefined,
      token_endpoint_auth_signing_alg_values_supported: undefined,
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      grant_types_supported: ['authorization_code'],
      scopes_supported: ['openid', 'email', 'profile'],
      claims_supported: ['aud', 'email', 'email_verified', 'exp', 'iat', 'iss', 'name', 'sub', 'azp', 'nonce'],
      code_challenge_methods_supported: ['plain', 'S256'],
    });
  next();
}

// ---- control API (test-only) ----

const control = express.Router();
control.use(express.json());
control.post('/logins', (req, res) => {
  const problem = validateLogin(req.body);
  if (problem !== undefined) return res.status(400).json({ error: problem });
  pendingLogins.push({ email_verified: true, ...req.body });
  return res.json({ queued: pendingLogins.length });
});
control.post('/reset', (_req, res) => {
  resetState();
  res.json({ reset: true });
});
control.get('/requests', (_req, res) => res.json(requestLog));
control.get('/keys', (_req, res) => res.json({ signing_kid: signingKey.kid, rogue_kid: ROGUE_KID }));

// ---- wiring ----

const app = express();
app.disable('x-powered-by');
app.use('/__control', control);
app.get('/.well-known/openid-configuration', patchDiscovery);
app.get('/authorize', authorizeGuard);
app.post('/token', express.urlencoded({ extended: false }), tokenGuard);
app.use(service.requestHandler); // body parsers inside skip bodies already read

const server = createServer(app);
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), args.host, resolve);
});
const { port } = server.address();
const hostForUrl = args.host.includes(':') ? `[${args.host}]` : args.host;
issuer.url = `http://${hostForUrl}:${port}`;

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (args['exit-on-stdin-close']) {
  // The Python wrapper holds our stdin; if that process dies, so do we.
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({ event: 'ready', issuer: issuer.url, port })}\n`);
