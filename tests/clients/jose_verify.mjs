// jose_verify.mjs JWKS_URL TOKEN ISSUER AUDIENCE: verify TOKEN with panva's jose
// (createRemoteJWKSet + jwtVerify), strict about RFC 9068: the key is picked from our JWKS
// by `kid`, the algorithm must be one our keys use, `typ` must be `at+jwt`, and `iss`,
// `aud`, `exp` are checked. A copy with its payload changed must fail. Prints the outcome
// as JSON. The library is installed into .local/node (make tools); NODE_PREFIX names it.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.NODE_PREFIX}/`);
const { createRemoteJWKSet, jwtVerify } = require("jose");

const [jwksUri, token, issuer, audience] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUri));
const options = { issuer, audience, typ: "at+jwt", algorithms: ["ES256", "RS256"] };
const { payload, protectedHeader } = await jwtVerify(token, jwks, options);

const [header, , signature] = token.split(".");
const forgedBody = Buffer.from(JSON.stringify({ ...payload, scope: "admin" })).toString("base64url");
let forged;
try {
  await jwtVerify(`${header}.${forgedBody}.${signature}`, jwks, options);
  forged = "accepted";
} catch (e) {
  forged = e.code ?? e.constructor.name;
}
console.log(JSON.stringify({ payload, header: protectedHeader, forged }));
