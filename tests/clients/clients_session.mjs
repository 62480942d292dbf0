// clients_session.mjs PLAN: services and apps as registered clients, driven by panva's
// oauth4webapi (a client we did not write), every endpoint discovered from our RFC 8414
// metadata at the gateway (the local issuer is the gateway's own URL). PLAN is a JSON
// object written by tests/tests/third_party.rs (the clients it registered, their secrets,
// a private key for private_key_jwt, a user, the audiences). Prints what happened as one
// JSON object; the Rust test judges it.
//
// Covered: client credentials with client_secret_basic, client_secret_post and
// private_key_jwt; the same client assertion replayed; a wrong and a rotated-out secret;
// token exchange, exchanged again (nested act), and refused for an audience the client may
// not ask for, for a scope the subject does not have, for a revoked subject token;
// introspection before and right after a revoke; a refresh by another client; the service
// and exchanged tokens at whoami through the gateway.
// oauth4webapi refuses plain http unless told: allowInsecureRequests, only because the
// gateway is on loopback.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.NODE_PREFIX}/`);
const oauth = require("oauth4webapi");
const { decodeJwt, importPKCS8 } = require("jose");

const plan = JSON.parse(process.argv[2]);
const loopback = { [oauth.allowInsecureRequests]: true };
const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
const EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const out = {};

const issuer = new URL(plan.base);
const as = await oauth.processDiscoveryResponse(
  issuer, await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...loopback }));
out.metadata = {
  issuer: as.issuer,
  token_endpoint: as.token_endpoint,
  introspection_endpoint: as.introspection_endpoint ?? null,
  revocation_endpoint: as.revocation_endpoint ?? null,
  grant_types_supported: as.grant_types_supported ?? null,
  token_endpoint_auth_methods_supported: as.token_endpoint_auth_methods_supported ?? null,
};

/** One token-endpoint (or introspection) call: the library's verdict, and the raw answer. */
async function attempt(request, process) {
  const response = await request();
  const raw = await response.clone().text();
  const result = { status: response.status, www_authenticate: response.headers.get("www-authenticate") };
  try {
    result.body = await process(response);
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.code = e.code ?? null;
    let body = null;
    try {
      body = JSON.parse(raw);
    } catch {
      body = raw;
    }
    // ResponseBodyError carries the RFC 6749 error; a 401 with a challenge comes as
    // WWWAuthenticateChallengeError, so the error is read from the body then.
    result.error = e.error ?? body?.error ?? null;
  }
  return result;
}

const claimsOf = (token) => {
  const c = decodeJwt(token);
  return { sub: c.sub, client_id: c.client_id, aud: c.aud, scope: c.scope, sid: c.sid ?? null,
    act: c.act ?? null, exp: c.exp, iat: c.iat };
};

function clientCredentials(client, auth, parameters = {}, options = {}) {
  return attempt(
    () => oauth.clientCredentialsGrantRequest(as, client, auth, parameters, { ...loopback, ...options }),
    (r) => oauth.processClientCredentialsResponse(as, client, r));
}

function exchange(client, secret, subjectToken, parameters) {
  return attempt(
    () => oauth.genericTokenEndpointRequest(as, client, oauth.ClientSecretBasic(secret), EXCHANGE,
      { subject_token: subjectToken, subject_token_type: ACCESS_TOKEN, ...parameters }, loopback),
    (r) => oauth.processGenericTokenEndpointResponse(as, client, r));
}

function introspect(client, secret, token) {
  return attempt(
    () => oauth.introspectionRequest(as, client, oauth.ClientSecretBasic(secret), token, loopback),
    (r) => oauth.processIntrospectionResponse(as, client, r));
}

async function revoke(token) {
  const response = await oauth.revocationRequest(as, { client_id: plan.first_party }, oauth.None(), token, loopback);
  await oauth.processRevocationResponse(response);
  return response.status;
}

async function whoami(token) {
  const response = await oauth.protectedResourceRequest(
    token, "GET", new URL("/api/whoami", plan.base), undefined, undefined, loopback);
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, authorizer: body?.authorizer ?? null };
}

async function login(username, password) {
  const response = await fetch(new URL("/auth/login", plan.base), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await response.json();
  if (response.status !== 200) throw new Error(`login: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

// Client credentials, three ways.
const basic = { client_id: plan.basic.id };
const cc = {};
cc.basic = await clientCredentials(basic, oauth.ClientSecretBasic(plan.basic.secret), { scope: "read" });
const post = { client_id: plan.post.id };
cc.post = await clientCredentials(post, oauth.ClientSecretPost(plan.post.secret));
const jwtClient = { client_id: plan.jwt.id };
const key = await importPKCS8(plan.jwt.pkcs8_pem, "ES256");
let assertion = null;
const capture = {
  [oauth.customFetch]: (url, init) => {
    assertion = new URLSearchParams(init.body.toString()).get("client_assertion");
    return fetch(url, init);
  },
};
cc.jwt = await clientCredentials(jwtClient, oauth.PrivateKeyJwt({ key, kid: plan.jwt.kid }), {}, capture);
// The same assertion sent again, by hand: refused (RFC 7523 §3, jti).
const replay = await fetch(as.token_endpoint, {
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({
    grant_type: "client_credentials",
    client_id: plan.jwt.id,
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: assertion ?? "",
  }),
});
out.cc_jwt_replayed = { status: replay.status, body: await replay.json() };
cc.wrong_secret = await clientCredentials(basic, oauth.ClientSecretBasic(plan.basic.wrong_secret));
const rotated = { client_id: plan.rotated.id };
cc.rotated_out = await clientCredentials(rotated, oauth.ClientSecretBasic(plan.rotated.old_secret));
cc.rotated_current = await clientCredentials(rotated, oauth.ClientSecretBasic(plan.rotated.secret));
for (const [name, result] of Object.entries(cc)) {
  if (result.ok) {
    result.claims = claimsOf(result.body.access_token);
    result.has_refresh_token = "refresh_token" in result.body;
    result.token_type = result.body.token_type;
  }
  out[`cc_${name}`] = { ...result, body: undefined, access_token: result.body?.access_token ?? null };
}
out.service_whoami = cc.basic.ok ? await whoami(cc.basic.body.access_token) : null;

// Token exchange: B exchanges the user's token for API C; C exchanges that for the
// gateway's API (nested act).
const user = await login(plan.user.username, plan.user.password);
out.user_claims = claimsOf(user.access_token);
const b = { client_id: plan.exchanger_b.id };
const c = { client_id: plan.exchanger_c.id };
const toC = await exchange(b, plan.exchanger_b.secret, user.access_token, { audience: plan.aud.api_c, scope: "read" });
out.exchange_b = { ...toC, body: undefined };
if (toC.ok) {
  out.exchange_b.claims = claimsOf(toC.body.access_token);
  out.exchange_b.issued_token_type = toC.body.issued_token_type ?? null;
  out.exchange_b.has_refresh_token = "refresh_token" in toC.body;
  out.exchange_b_whoami = await whoami(toC.body.access_token);
  const toGateway = await exchange(c, plan.exchanger_c.secret, toC.body.access_token, { audience: plan.aud.gateway });
  out.exchange_c = { ...toGateway, body: undefined };
  if (toGateway.ok) {
    out.exchange_c.claims = claimsOf(toGateway.body.access_token);
    out.exchange_c_whoami = await whoami(toGateway.body.access_token);
  }
}
const refusals = {};
refusals.audience = await exchange(b, plan.exchanger_b.secret, user.access_token, { audience: plan.aud.forbidden });
refusals.scope = await exchange(b, plan.exchanger_b.secret, user.access_token, { audience: plan.aud.api_c, scope: "admin" });

// Introspection: the user's token is active, then revoked (RFC 7009), then not: no lag.
const introspector = { client_id: plan.introspector.id };
out.introspect_before = await introspect(introspector, plan.introspector.secret, user.access_token);
out.revoke_status = await revoke(user.access_token);
out.introspect_after = await introspect(introspector, plan.introspector.secret, user.access_token);
refusals.revoked_subject = await exchange(b, plan.exchanger_b.secret, user.access_token, { audience: plan.aud.api_c });
out.exchange_refused = Object.fromEntries(
  Object.entries(refusals).map(([k, v]) => [k, { status: v.status, ok: v.ok, error: v.error }]));

// A refresh presented by another client: refused, and the session goes on for its own.
const session = await login(plan.user.username, plan.user.password);
const other = { client_id: plan.other_app };
out.refresh_other_client = await attempt(
  () => oauth.refreshTokenGrantRequest(as, other, oauth.None(), session.refresh_token, loopback),
  (r) => oauth.processRefreshTokenResponse(as, other, r));
delete out.refresh_other_client.body;
const own = { client_id: plan.first_party };
const refreshed = await attempt(
  () => oauth.refreshTokenGrantRequest(as, own, oauth.None(), session.refresh_token, loopback),
  (r) => oauth.processRefreshTokenResponse(as, own, r));
out.refresh_own_client = { status: refreshed.status, ok: refreshed.ok, error: refreshed.error ?? null,
  rotated: refreshed.ok && refreshed.body.refresh_token !== session.refresh_token };
console.log(JSON.stringify(out));
