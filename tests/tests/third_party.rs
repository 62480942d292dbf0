//! Clients we did not write, against the local gateway: Authlib's OAuth2 client for the
//! refresh-token grant and RFC 7009 revocation, and our access tokens verified from our
//! JWKS URL by PyJWT's `PyJWKClient`, AWS's `aws-jwt-verify` and panva's `jose`, and a
//! session bound to a device key by panva's `oauth4webapi` and its DPoP handle (all
//! installed into `.local/` by `make tools`). The scripts are in `tests/clients/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokenauth_tests::gateway::{gateway_client, run_client as run, stated_revocation_lag, third_party_verdicts};
use tokenauth_tests::{clients, config, create_user, jwt_header};

#[tokio::test]
async fn authlib_refreshes_and_revokes_by_the_rfcs_through_the_gateway() {
    let config = config();
    let clients = clients().await;
    let (username, password, _) = create_user(&config, &clients, "authlib", &["read"]).await;
    let gateway = gateway_client();
    let base = gateway.url("");
    let out = run(".local/venv/bin/python", "authlib_session.py", &[&base, &username, &password]).await;

    assert_eq!(out["login_status"], 200, "{out}");
    assert_eq!((out["whoami_status"].as_u64(), out["whoami_scope"].as_str()), (Some(200), Some("read")), "{out}");
    assert_eq!(out["refreshed_token_type"], "Bearer");
    assert_eq!(out["rotated"], true, "the refresh token rotates: {out}");
    assert_eq!(out["new_access_token"], true);
    assert_eq!(out["whoami_after_refresh"], 200);
    assert_eq!(out["revoke_status"], 200);
    assert_eq!(out["refresh_after_revoke"], "invalid_grant", "Authlib sees the RFC 6749 error: {out}");
    assert_eq!(out["revoke_unknown_status"], 200, "RFC 7009 §2.2: an invalid token is not an error");

    // The session Authlib revoked: its access token is refused within the stated lag.
    let access_token = out["access_token"].as_str().unwrap();
    // A request that began after the lag (plus one poll of slack) is never allowed.
    let (started, lag) = (Instant::now(), stated_revocation_lag());
    loop {
        let sent = started.elapsed();
        if gateway.whoami(access_token).await.unwrap().status != 200 {
            break;
        }
        assert!(sent <= lag + Duration::from_secs(1), "a request sent {sent:?} after the revoke was allowed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn pyjwt_jose_and_aws_jwt_verify_verify_our_access_token_from_our_jwks_url_and_refuse_a_forgery() {
    let config = config();
    let clients = clients().await;
    let (username, password, user_id) = create_user(&config, &clients, "verifiers", &["read"]).await;
    let gateway = gateway_client();
    let login = gateway.login(&username, &password).await.unwrap();
    assert_eq!(login.status, 200, "{}", login.text);
    let token = login.str("access_token").to_owned();
    let header = jwt_header(&token);
    let (issuer, audience) = (config.issuer.clone(), config.audience.clone());
    let verdicts = third_party_verdicts(&token, &issuer, &audience).await;
    let (pyjwt, node, jose) = (verdicts.pyjwt, verdicts.aws_jwt_verify, verdicts.jose);

    assert_eq!(pyjwt["kid"], header["kid"], "PyJWKClient chose the key by kid: {pyjwt}");
    assert_eq!(pyjwt["algorithm"], header["alg"]);
    assert_eq!(pyjwt["claims"]["sub"], user_id.as_str());
    assert_eq!(pyjwt["claims"]["iss"], issuer.as_str());
    assert_eq!(pyjwt["forged"], "invalid signature", "{pyjwt}");

    assert_eq!(node["payload"]["sub"], user_id.as_str(), "{node}");
    assert_eq!(node["payload"]["aud"], audience.as_str());
    assert_eq!(node["forged"], "JwtInvalidSignatureError", "{node}");

    assert_eq!(jose["header"], header, "jose read our header as we wrote it: {jose}");
    assert_eq!(jose["payload"]["sub"], user_id.as_str(), "{jose}");
    assert_eq!(jose["forged"], "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "{jose}");
}

/// RFC 9449 with a client we did not write: oauth4webapi makes the key
/// (`generateKeyPair('ES256')`), its `DPoP` handle signs the proofs of whoami and of the
/// refresh-token grant, which it makes from our RFC 8414 metadata. Login (ours, not an OAuth
/// grant) carries a proof over the same key made with jose. The metadata is discovered from
/// the issuer (the gateway's URL) and used unmodified.
#[tokio::test]
async fn a_dpop_session_through_the_gateway_with_oauth4webapi() {
    let config = config();
    let clients = clients().await;
    let (username, password, user_id) = create_user(&config, &clients, "dpop", &["read"]).await;
    let base = gateway_client().url("");
    // The local issuer is the gateway's own URL: the client discovers everything from it.
    assert_eq!(base.trim_end_matches('/'), config.issuer.trim_end_matches('/'), "the local issuer is the gateway");
    let out = run("node", "dpop_session.mjs", &[&base, &config.issuer, &username, &password]).await;

    let jkt = out["thumbprint"].as_str().expect("oauth4webapi's thumbprint of its key");
    assert_eq!(out["jose_thumbprint"], jkt, "jose and oauth4webapi name the key alike: {out}");
    assert_eq!(out["login_status"], 200, "{out}");
    assert_eq!(out["login_token_type"], "DPoP", "{out}");
    assert_eq!(out["login_cnf"]["jkt"], jkt, "login bound the session to the client's key: {out}");

    assert_eq!(out["whoami"]["status"], 200, "protectedResourceRequest with the DPoP handle: {out}");
    assert_eq!(out["whoami"]["sub"], user_id.as_str(), "{out}");
    assert_eq!(out["whoami_as_bearer_status"], 403, "a bound token without a proof is refused: {out}");

    assert_eq!(out["metadata"]["dpop_signing_alg_values_supported"], serde_json::json!(["ES256"]), "{out}");
    assert_eq!(out["metadata"]["token_endpoint"], format!("{}/auth/token", config.issuer.trim_end_matches('/')));
    assert_eq!(out["refresh_status"], 200, "refreshTokenGrantRequest with the DPoP handle: {out}");
    assert_eq!(out["refreshed_token_type"], "DPoP", "{out}");
    assert_eq!(out["refreshed_cnf"]["jkt"], jkt, "the rotated session is still bound to the same key: {out}");
    assert_eq!((out["rotated"].as_bool(), out["new_access_token"].as_bool()), (Some(true), Some(true)), "{out}");
    assert_eq!(out["whoami_after_refresh"]["status"], 200, "{out}");
    assert_eq!(out["whoami_after_refresh"]["sub"], user_id.as_str(), "{out}");
}
