#!/usr/bin/env python3
"""pyjwt_verify.py JWKS_URL TOKEN ISSUER AUDIENCE: verify TOKEN with PyJWT's PyJWKClient,
which fetches our JWKS and picks the key by `kid`. A copy with its payload changed must
fail. Prints the outcome as JSON."""

import base64
import json
import sys

import jwt

jwks_url, token, issuer, audience = sys.argv[1:5]
client = jwt.PyJWKClient(jwks_url)
key = client.get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["ES256", "RS256"], audience=audience, issuer=issuer)

header, payload, signature = token.split(".")
forged_claims = dict(claims, scope="admin")
forged_payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
try:
    jwt.decode(f"{header}.{forged_payload}.{signature}", key.key, algorithms=["ES256", "RS256"],
               audience=audience, issuer=issuer)
    forged = "accepted"
except jwt.InvalidSignatureError:
    forged = "invalid signature"

print(json.dumps({"kid": key.key_id, "algorithm": key.algorithm_name, "claims": claims, "forged": forged}))
