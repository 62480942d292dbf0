#!/usr/bin/env python3
"""authlib_session.py GATEWAY USERNAME PASSWORD: a session driven by Authlib's OAuth2 client
(a library we did not write): the refresh-token grant (RFC 6749 section 6) and token
revocation (RFC 7009) against the local gateway. Prints what happened as one JSON object;
tests/tests/third_party.rs judges it."""

import json
import sys

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

base, username, password = sys.argv[1:4]
out = {}

# Login is ours (a password endpoint, not an OAuth grant); everything after is Authlib's.
login = requests.post(f"{base}/auth/login", json={"username": username, "password": password}, timeout=60)
out["login_status"] = login.status_code
first = login.json()
session = OAuth2Session(client_id="first-party", token=first, token_endpoint_auth_method="none",
                        revocation_endpoint_auth_method="none")

me = session.get(f"{base}/api/whoami", timeout=60)
out["whoami_status"] = me.status_code
out["whoami_scope"] = me.json().get("authorizer", {}).get("scope")

second = session.refresh_token(f"{base}/auth/refresh", timeout=60)
out["refreshed_token_type"] = second.get("token_type")
out["rotated"] = second["refresh_token"] != first["refresh_token"]
out["new_access_token"] = second["access_token"] != first["access_token"]
out["whoami_after_refresh"] = session.get(f"{base}/api/whoami", timeout=60).status_code

revoked = session.revoke_token(f"{base}/auth/revoke", token=second["refresh_token"],
                               token_type_hint="refresh_token", timeout=60)
out["revoke_status"] = revoked.status_code


def refresh_error(refresh_token):
    try:
        session.refresh_token(f"{base}/auth/refresh", refresh_token=refresh_token, timeout=60)
        return "accepted"
    except AuthlibBaseError as e:
        return e.error


out["refresh_after_revoke"] = refresh_error(second["refresh_token"])
# An unknown token: RFC 7009 answers 200 all the same.
out["revoke_unknown_status"] = session.revoke_token(f"{base}/auth/revoke", token="tkrt_not-a-token",
                                                    timeout=60).status_code
out["access_token"] = second["access_token"]
print(json.dumps(out))
