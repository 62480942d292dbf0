//! Clients we did not write, against the local gateway: Authlib's OAuth2 client for the
//! refresh-token grant and RFC 7009 revocation, and our access tokens verified from our
//! JWKS URL by PyJWT's `PyJWKClient`, AWS's `aws-jwt-verify` and panva's `jose`, and a
//! session bound to a device key by panva's `oauth4webapi` and its DPoP handle, and
//! services and apps as registered clients by oauth4webapi (all installed into `.local/`
//! by `make tools`). The scripts are in `tests/clients/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokenauth::platform::clock::{Clock, SystemClock};
use tokenauth::rules::clients::{ClientRecord, ClientSecret, ClientType, GrantType};
use tokenauth::rules::dpop::ProofKey;
use tokenauth::store::DynamoClients;
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

/// A confidential client for `grants`, registered now with a new secret: (id, secret).
async fn service_client(
    registry: &DynamoClients,
    prefix: &str,
    grants: &[GrantType],
    scopes: &[&str],
    audiences: &[&str],
) -> (String, ClientSecret) {
    let id = format!("{prefix}-{}", tokenauth::rules::token::random_id().replace(['-', '_'], ""));
    let secret = ClientSecret::new();
    let mut client = ClientRecord::public(
        &id,
        scopes.iter().map(|s| s.to_string()).collect(),
        audiences.iter().map(|a| a.to_string()).collect(),
        SystemClock.now(),
    );
    client.client_type = ClientType::Confidential;
    client.grants = grants.to_vec();
    client.rotate_secret(&secret, SystemClock.now(), 0);
    registry.create(&client).await.expect("client registered");
    (id, secret)
}

/// PKCS #8 DER as PEM, for jose's `importPKCS8`.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// Issue 21 with a client we did not write: oauth4webapi, every endpoint discovered from
/// our metadata at the gateway. Client credentials three ways, a replayed assertion, a
/// wrong and a rotated-out secret; token exchange twice (nested `act`) and its refusals;
/// introspection before and right after a revoke; a refresh by another client; the service
/// and exchanged tokens at whoami; then a disabled client's token refused within the lag.
#[tokio::test]
async fn services_and_apps_as_clients_with_oauth4webapi_through_the_gateway() {
    let config = config();
    let clients = clients().await;
    let registry = DynamoClients::new(clients.dynamodb.clone(), &config.clients_table);
    let gateway = gateway_client();
    let base = gateway.url("");
    let base = base.trim_end_matches('/');
    let (api, api_c, forbidden) = (config.audience.as_str(), "https://api.c.test", "https://api.d.test");
    let cc = [GrantType::ClientCredentials];
    let exchange = [GrantType::TokenExchange];
    let (basic, basic_secret) = service_client(&registry, "svc-basic", &cc, &["read", "write"], &[api]).await;
    let (post, post_secret) = service_client(&registry, "svc-post", &cc, &["read", "write"], &[api]).await;
    let (rotated, old_secret) = service_client(&registry, "svc-rotated", &cc, &["read"], &[api]).await;
    let mut record = registry.get(&rotated, true).await.unwrap().unwrap();
    let rotated_secret = ClientSecret::new();
    record.rotate_secret(&rotated_secret, SystemClock.now(), 0);
    registry.replace(&record).await.unwrap();
    let (b, b_secret) = service_client(&registry, "svc-b", &exchange, &["read", "write"], &[api_c]).await;
    let (c, c_secret) = service_client(&registry, "svc-c", &exchange, &["read"], &[api]).await;
    let (introspector, introspector_secret) = service_client(&registry, "svc-intro", &cc, &[], &[api]).await;
    // private_key_jwt: the client's key pair made here, its public half registered.
    let key = ProofKey::generate().unwrap();
    let (jwt, _) = service_client(&registry, "svc-jwt", &cc, &["read"], &[api]).await;
    let mut record = registry.get(&jwt, true).await.unwrap().unwrap();
    let mut public = serde_json::to_value(key.public_jwk()).unwrap();
    public["kid"] = json!("k1");
    public["alg"] = json!("ES256");
    record.secrets.clear();
    record.jwks = Some(json!({"keys": [public]}).to_string());
    registry.replace(&record).await.unwrap();
    let other_app = format!("app-{}", tokenauth::rules::token::random_id().replace(['-', '_'], ""));
    registry.create(&ClientRecord::public(&other_app, vec![], vec![], SystemClock.now())).await.unwrap();
    let (username, password, user_id) = create_user(&config, &clients, "clients", &["read", "write"]).await;

    let plan = json!({
        "base": base, "first_party": config.client_id,
        "basic": {"id": basic, "secret": basic_secret.encode(), "wrong_secret": ClientSecret::new().encode()},
        "post": {"id": post, "secret": post_secret.encode()},
        "jwt": {"id": jwt, "kid": "k1", "pkcs8_pem": pem(&key.to_pkcs8().unwrap())},
        "rotated": {"id": rotated, "old_secret": old_secret.encode(), "secret": rotated_secret.encode()},
        "exchanger_b": {"id": b, "secret": b_secret.encode()},
        "exchanger_c": {"id": c, "secret": c_secret.encode()},
        "introspector": {"id": introspector, "secret": introspector_secret.encode()},
        "other_app": other_app,
        "user": {"username": username, "password": password},
        "aud": {"gateway": api, "api_c": api_c, "forbidden": forbidden},
    });
    let out = run("node", "clients_session.mjs", &[&plan.to_string()]).await;

    // Discovery at the gateway, unmodified.
    let metadata = &out["metadata"];
    assert_eq!(metadata["issuer"], base, "the local issuer is the gateway's URL: {out}");
    assert_eq!(metadata["token_endpoint"], format!("{base}/auth/token"));
    assert_eq!(metadata["introspection_endpoint"], format!("{base}/auth/introspect"));
    for grant in GrantType::ALL {
        assert!(metadata["grant_types_supported"].as_array().unwrap().contains(&json!(grant.as_str())), "{out}");
    }
    for method in ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"] {
        let methods = metadata["token_endpoint_auth_methods_supported"].as_array().unwrap();
        assert!(methods.contains(&json!(method)), "{method}: {out}");
    }

    // Client credentials: a service's own token, no session, no refresh token.
    for (name, id, scope) in [("cc_basic", &basic, "read"), ("cc_post", &post, "read write"), ("cc_jwt", &jwt, "read")]
    {
        let r = &out[name];
        assert_eq!(r["ok"], true, "{name}: {out}");
        assert_eq!(r["claims"]["sub"], id.as_str(), "{name}: sub is the client");
        assert_eq!(r["claims"]["client_id"], id.as_str());
        assert_eq!(r["claims"]["sid"], Value::Null, "{name}: no session");
        assert_eq!(r["claims"]["scope"], scope, "{name}");
        assert_eq!(r["claims"]["aud"], api, "{name}");
        // oauth4webapi hands token_type lower-cased (RFC 6749 §7.1: case-insensitive).
        assert_eq!((r["has_refresh_token"].as_bool(), r["token_type"].as_str()), (Some(false), Some("bearer")));
    }
    assert_eq!(out["cc_jwt_replayed"]["status"], 401, "the same client assertion again: {out}");
    assert_eq!(out["cc_jwt_replayed"]["body"]["error"], "invalid_client", "{}", out["cc_jwt_replayed"]);
    for name in ["cc_wrong_secret", "cc_rotated_out"] {
        assert_eq!(
            (out[name]["status"].as_u64(), out[name]["error"].as_str()),
            (Some(401), Some("invalid_client")),
            "{name}: {out}"
        );
        let challenge = out[name]["www_authenticate"].as_str().unwrap_or_default();
        assert!(challenge.to_ascii_lowercase().starts_with("basic"), "{name}: the Basic challenge: {out}");
    }
    assert_eq!(out["cc_rotated_current"]["ok"], true, "the new secret works: {out}");
    let service = &out["service_whoami"];
    assert_eq!(service["status"], 200, "a service token at whoami: {out}");
    assert_eq!(service["authorizer"]["principal_type"], "service", "{out}");
    assert_eq!(service["authorizer"]["sub"], basic.as_str());
    assert_eq!(service["authorizer"]["sid"], "");

    // Token exchange: B for API C, then C for the gateway's API (nested act).
    let user = &out["user_claims"];
    let to_c = &out["exchange_b"];
    assert_eq!(to_c["ok"], true, "{out}");
    assert_eq!(to_c["claims"]["sub"], user_id.as_str());
    assert_eq!(to_c["claims"]["aud"], api_c);
    assert_eq!(to_c["claims"]["client_id"], b.as_str());
    assert_eq!(to_c["claims"]["act"], json!({"sub": b}), "{out}");
    assert_eq!(to_c["claims"]["sid"], user["sid"], "the same session");
    assert_eq!(to_c["claims"]["scope"], "read");
    assert!(to_c["claims"]["exp"].as_u64() <= user["exp"].as_u64(), "no longer than the subject token: {out}");
    assert_eq!(to_c["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(to_c["has_refresh_token"], false);
    let refused_at_b = out["exchange_b_whoami"]["status"].as_u64().unwrap();
    assert!(matches!(refused_at_b, 401 | 403), "a token for API C is refused at this API: {out}");
    let to_gateway = &out["exchange_c"];
    assert_eq!(to_gateway["ok"], true, "{out}");
    assert_eq!(to_gateway["claims"]["act"], json!({"sub": c, "act": {"sub": b}}), "nested act: {out}");
    assert_eq!(to_gateway["claims"]["aud"], api);
    let at_whoami = &out["exchange_c_whoami"];
    assert_eq!(at_whoami["status"], 200, "{out}");
    assert_eq!(at_whoami["authorizer"]["principal_type"], "user");
    assert_eq!(at_whoami["authorizer"]["sub"], user_id.as_str());
    assert_eq!(at_whoami["authorizer"]["client_id"], c.as_str());
    assert_eq!(at_whoami["authorizer"]["act"], format!("{c} {b}"));
    let refused = &out["exchange_refused"];
    assert_eq!(refused["audience"]["error"], "invalid_target", "{out}");
    assert_eq!(refused["scope"]["error"], "invalid_scope", "{out}");
    assert_eq!(refused["revoked_subject"]["ok"], false, "{out}");
    // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
    assert_eq!(refused["revoked_subject"]["error"], "invalid_request", "{out}");

    // Introspection: no lag after a revoke.
    assert_eq!(out["introspect_before"]["ok"], true, "{out}");
    assert_eq!(out["introspect_before"]["body"]["active"], true, "{out}");
    assert_eq!(out["introspect_before"]["body"]["sub"], user_id.as_str());
    assert_eq!(out["revoke_status"], 200);
    assert_eq!(out["introspect_after"]["body"]["active"], false, "right after the revoke: {out}");

    // A refresh presented by another client: refused, the session intact for its own.
    assert_eq!(out["refresh_other_client"]["error"], "invalid_grant", "{out}");
    assert_eq!(
        (out["refresh_own_client"]["ok"].as_bool(), out["refresh_own_client"]["rotated"].as_bool()),
        (Some(true), Some(true)),
        "{out}"
    );

    // A disabled client's token: refused at whoami within the stated lag.
    let token = out["cc_basic"]["access_token"].as_str().unwrap();
    assert_eq!(gateway.whoami(token).await.unwrap().status, 200);
    let (started, lag) = (Instant::now(), stated_revocation_lag());
    tokenauth::services::clients::ClientRegistry::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock))
        .disable(&basic)
        .await
        .expect("disabled");
    loop {
        let sent = started.elapsed();
        if gateway.whoami(token).await.unwrap().status != 200 {
            break;
        }
        assert!(sent <= lag + Duration::from_secs(1), "a request sent {sent:?} after the disable was allowed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
