// dpop_session.mjs GATEWAY ISSUER USERNAME PASSWORD: a session bound to a device key with
// DPoP (RFC 9449), driven by panva's oauth4webapi (a client we did not write): its
// generateKeyPair('ES256') makes the key and its DPoP() handle signs the proofs of whoami
// (protectedResourceRequest) and of the refresh-token grant (refreshTokenGrantRequest +
// processRefreshTokenResponse, against our RFC 8414 metadata, client `first-party`, no
// client authentication). Prints what happened as one JSON object; tests/tests/third_party.rs
// judges it. The libraries are installed into .local/node (make tools); NODE_PREFIX names it.
//
// One thing is ours, not oauth4webapi's, and said so here: login is a first-party JSON
// endpoint, not an OAuth grant, and the DPoP handle signs proofs only inside
// oauth4webapi's own requests, so the login proof is made with panva's jose over the same
// key pair (typ dpop+jwt, the public jwk in the header). Everything else is discovered:
// the local issuer is the gateway's own URL, so oauth4webapi's discoveryRequest finds the
// metadata under it and every endpoint it names is used as it is.
// oauth4webapi refuses plain http unless told: allowInsecureRequests, only because the
// gateway is on loopback.
import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";

const require = createRequire(`${process.env.NODE_PREFIX}/`);
const oauth = require("oauth4webapi");
const { SignJWT, exportJWK, calculateJwkThumbprint, decodeJwt } = require("jose");

const [base, issuer, username, password] = process.argv.slice(2);
const loopback = { [oauth.allowInsecureRequests]: true };
const out = {};

const client = { client_id: "first-party" };
const keyPair = await oauth.generateKeyPair("ES256");
const DPoP = oauth.DPoP(client, keyPair);
out.thumbprint = await DPoP.calculateThumbprint();
const publicJwk = await exportJWK(keyPair.publicKey);
// The two libraries name the key alike (RFC 7638).
out.jose_thumbprint = await calculateJwkThumbprint(publicJwk);

const cnf = (token) => decodeJwt(token).cnf ?? null;

// Login: our endpoint, a proof over the same key (no access token yet: no ath).
const loginUrl = new URL("/auth/login", base);
const loginProof = await new SignJWT({ jti: randomUUID(), htm: "POST", htu: loginUrl.href })
  .setProtectedHeader({ typ: "dpop+jwt", alg: "ES256", jwk: publicJwk })
  .setIssuedAt()
  .sign(keyPair.privateKey);
const login = await fetch(loginUrl, {
  method: "POST",
  headers: { "content-type": "application/json", dpop: loginProof },
  body: JSON.stringify({ username, password }),
});
out.login_status = login.status;
const first = await login.json();
if (login.status !== 200) {
  out.login_error = first;
  console.log(JSON.stringify(out));
  process.exit(0);
}
out.login_token_type = first.token_type;
out.login_cnf = cnf(first.access_token);

async function whoami(accessToken) {
  const response = await oauth.protectedResourceRequest(
    accessToken, "GET", new URL("/api/whoami", base), undefined, undefined, { DPoP, ...loopback });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, sub: body?.authorizer?.sub ?? null };
}

out.whoami = await whoami(first.access_token);
// The same bound token as a bearer token, without a proof: must be refused.
const asBearer = await fetch(new URL("/api/whoami", base), {
  headers: { authorization: `Bearer ${first.access_token}` },
});
out.whoami_as_bearer_status = asBearer.status;

// The refresh-token grant, as oauth4webapi makes it, against our metadata.
const metadataResponse = await oauth.discoveryRequest(new URL(issuer), { algorithm: "oauth2", ...loopback });
const as = await oauth.processDiscoveryResponse(new URL(issuer), metadataResponse);
out.metadata = {
  token_endpoint: as.token_endpoint,
  dpop_signing_alg_values_supported: as.dpop_signing_alg_values_supported ?? null,
};
const refreshResponse = await oauth.refreshTokenGrantRequest(
  as, client, oauth.None(), first.refresh_token, { DPoP, ...loopback });
out.refresh_status = refreshResponse.status;
const raw = await refreshResponse.clone().json();
let second;
try {
  second = await oauth.processRefreshTokenResponse(as, client, refreshResponse);
} catch (e) {
  out.refresh_error = e.error ?? e.code ?? e.message;
  out.refresh_body = raw;
  console.log(JSON.stringify(out));
  process.exit(0);
}
out.refreshed_token_type = raw.token_type;
out.refreshed_cnf = cnf(second.access_token);
out.rotated = second.refresh_token !== first.refresh_token;
out.new_access_token = second.access_token !== first.access_token;
out.whoami_after_refresh = await whoami(second.access_token);
console.log(JSON.stringify(out));
