// aws_jwt_verify.mjs JWKS_URL TOKEN ISSUER AUDIENCE: verify TOKEN with AWS's aws-jwt-verify
// (JwtVerifier), which fetches our JWKS and picks the key by `kid`. Its built-in fetcher
// speaks only https; the local gateway is http on loopback, so the fetcher is Node's fetch
// (the library's documented extension point), everything else is the library's own. A copy
// with its payload changed must fail. Prints the outcome as JSON.
// The library is installed into .local/node (make tools); NODE_PREFIX names that directory.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.NODE_PREFIX}/`);
const { JwtVerifier } = require("aws-jwt-verify");
const { SimpleJwksCache } = require("aws-jwt-verify/jwk");

const [jwksUri, token, issuer, audience] = process.argv.slice(2);
const fetcher = {
  async fetch(uri) {
    const response = await fetch(uri);
    if (!response.ok) throw new Error(`${uri}: ${response.status}`);
    return response.arrayBuffer(); // the library parses the bytes itself
  },
};
const verifier = JwtVerifier.create(
  { issuer, audience, jwksUri },
  { jwksCache: new SimpleJwksCache({ fetcher }) },
);
const payload = await verifier.verify(token);

const [header, body, signature] = token.split(".");
const forgedClaims = { ...payload, scope: "admin" };
const forgedBody = Buffer.from(JSON.stringify(forgedClaims)).toString("base64url");
let forged;
try {
  await verifier.verify(`${header}.${forgedBody}.${signature}`);
  forged = "accepted";
} catch (e) {
  forged = e.constructor.name;
}
console.log(JSON.stringify({ payload, forged }));
