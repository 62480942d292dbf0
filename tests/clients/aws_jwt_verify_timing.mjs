// aws_jwt_verify_timing.mjs JWKS_JSON TOKEN ISSUER AUDIENCE [CALLS]: how long AWS's
// aws-jwt-verify takes to verify TOKEN, the JWKS given to it up front (cacheJwks), so no
// fetch is timed: what a Node authorizer built on it pays per call, since it verifies
// every call. verifySync in batches; prints the median of the batches' per-call time, in
// microseconds, as JSON. The authorizer's benchmark runs it beside its own figures.
// The library is installed into .local/node (make tools); NODE_PREFIX names that directory.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.NODE_PREFIX}/`);
const { JwtVerifier } = require("aws-jwt-verify");

const [jwksJson, token, issuer, audience, callsArg] = process.argv.slice(2);
const verifier = JwtVerifier.create({ issuer, audience, jwksUri: "https://jwks.invalid/jwks.json" });
verifier.cacheJwks(JSON.parse(jwksJson));
const payload = verifier.verifySync(token); // throws unless it verifies

const calls = Number(callsArg ?? 50);
const batches = [];
for (let i = 0; i < 201; i++) {
  const start = process.hrtime.bigint();
  for (let j = 0; j < calls; j++) verifier.verifySync(token);
  batches.push(Number(process.hrtime.bigint() - start) / 1000 / calls);
}
batches.sort((a, b) => a - b);
console.log(JSON.stringify({ sub: payload.sub, per_call_us: batches[100] }));
