//! Envelope signing keys against the local stack (DynamoDB Local, the KMS emulator's
//! `GenerateDataKeyPairWithoutPlaintext`, `ReEncrypt` and `Decrypt`), each test with a key
//! set of its own whose current key is an envelope key: a login and a refresh make no KMS
//! call once the signer has decrypted the key; no table holds a private key in clear; the
//! ciphertext opens only under its own kid, and only into its own public key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lambda_http::http::StatusCode;
use tokenauth::rules::keys::set::{KeyEntry, KeyKind, KeyStep};
use tokenauth::rules::keys::{KeyAlgorithm, Signer};
use tokenauth::services::keys::envelope::{CONTEXT_KEY, CONTEXT_KID, CONTEXT_PURPOSE};
use tokenauth::services::keys::manager::KeySource;
use tokenauth::services::keys::{EnvelopeSigner, KeyManager};
use tokenauth::{Config, SystemClock};
use tokenauth_tests::*;

/// A configuration whose Keys table is new and whose first key is an envelope key, made as
/// the rotation makes it (`SIGNING_KEY_KIND=envelope`); the set's entry for it.
async fn envelope_set(clients: &Clients) -> (Config, KeyEntry) {
    let table = unique_username("envelope-keys");
    create_keys_table(clients, &table).await;
    let tag = unique_username("envelope-set");
    let config = config_with(&[("KEYS_TABLE", &table), ("KEY_SET_TAG", &tag), ("SIGNING_KEY_KIND", "envelope")]);
    assert_eq!(config.signing_key_kind, KeyKind::Envelope);
    let manager =
        KeyManager::from_config(&config, clients.dynamodb.clone(), clients.kms.clone(), Arc::new(SystemClock));
    let step = manager.rotate().await.unwrap();
    assert!(matches!(step, Some(KeyStep::Bootstrapped { .. })), "{step:?}");
    let current = manager.list().await.unwrap().current().cloned().unwrap();
    (config, current)
}

/// A login and a refresh of its session: the login's tokens and the refresh's.
async fn log_in_and_refresh(
    login: &tokenauth::LoginService,
    refresh: &tokenauth::TokenService,
    username: &str,
    password: &str,
) -> (serde_json::Value, serde_json::Value) {
    let tokens = login_tokens(login, username, password).await;
    let request = refresh_request(tokens["refresh_token"].as_str().unwrap(), None, false);
    let response = tokenauth::edge::http::token(refresh, &request).await;
    assert_eq!(response.status(), StatusCode::OK);
    (tokens, json_of(&response))
}

/// The KMS calls among the recorded ones.
fn kms_calls(clients: &Clients) -> Vec<String> {
    clients.calls.names().into_iter().filter(|name| name.starts_with("KMS.")).collect()
}

/// The claims of `token` as jsonwebtoken (not our verifier) reads them with the public key
/// the set publishes for `entry`.
fn verified_with(entry: &KeyEntry, config: &Config, token: &str) -> serde_json::Value {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let der = B64.decode(&entry.public_key).unwrap();
    let key = DecodingKey::from_ec_pem(pem(&der).as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&config.audience]);
    validation.set_issuer(&[&config.issuer]);
    decode::<serde_json::Value>(token, &key, &validation).expect("the envelope key's signature verifies").claims
}

#[tokio::test]
async fn a_login_and_a_refresh_make_no_kms_call_once_the_envelope_key_is_decrypted() {
    let clients = clients().await;
    let (config, entry) = envelope_set(&clients).await;
    assert_eq!((entry.kind, entry.alg), (KeyKind::Envelope, KeyAlgorithm::ES256));
    let (username, password, user_id) = create_user(&config, &clients, "envelope", &["read"]).await;

    clients.calls.clear();
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    let start_up = kms_calls(&clients);
    // Each signer decrypts the envelope key once; refresh also opens the sealing secret.
    assert_eq!(start_up.iter().filter(|c| *c == "KMS.Decrypt").count(), 3, "{start_up:?}");
    assert!(!start_up.iter().any(|c| c == "KMS.Sign"), "{start_up:?}");

    clients.calls.clear();
    let (tokens, refreshed) = log_in_and_refresh(&login, &refresh, &username, &password).await;
    assert_eq!(kms_calls(&clients), Vec::<String>::new(), "steady state: {:?}", clients.calls.names());
    assert!(!clients.calls.names().is_empty(), "the recorder saw the DynamoDB calls");

    for token in [&tokens["access_token"], &refreshed["access_token"]] {
        let token = token.as_str().unwrap();
        assert_eq!(jwt_header(token)["kid"], entry.kid.as_str());
        assert_eq!(verified_with(&entry, &config, token)["sub"], user_id.as_str());
    }
}

/// Every attribute value of `item`, depth first, maps and lists opened.
fn values(value: &AttributeValue, out: &mut Vec<Vec<u8>>) {
    match value {
        AttributeValue::B(blob) => out.push(blob.as_ref().to_vec()),
        AttributeValue::Bs(blobs) => out.extend(blobs.iter().map(|b| b.as_ref().to_vec())),
        AttributeValue::S(text) => {
            out.push(text.as_bytes().to_vec());
            for engine in [&B64, &base64::engine::general_purpose::URL_SAFE_NO_PAD] {
                if let Ok(decoded) = engine.decode(text) {
                    out.push(decoded);
                }
            }
        }
        AttributeValue::Ss(texts) => texts.iter().for_each(|t| values(&AttributeValue::S(t.clone()), out)),
        AttributeValue::L(list) => list.iter().for_each(|v| values(v, out)),
        AttributeValue::M(map) => map.values().for_each(|v| values(v, out)),
        _ => {}
    }
}

/// Whether `bytes` is, or holds at any offset, a P-256 private key as PKCS #8 or SEC1
/// (RFC 5915) DER, or holds the raw 32-byte scalar `d`.
fn holds_private_key(bytes: &[u8], d: &[u8]) -> bool {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING as P256};
    (0..bytes.len()).any(|at| {
        let rest = &bytes[at..];
        rest.starts_with(d)
            || (rest.first() == Some(&0x30)
                && (EcdsaKeyPair::from_pkcs8(&P256, rest).is_ok()
                    || EcdsaKeyPair::from_private_key_der(&P256, rest).is_ok()))
    })
}

/// The private scalar of a PKCS #8 P-256 key: the OCTET STRING of 32 bytes after
/// ECPrivateKey's version 1 (`02 01 01 04 20`).
fn scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8.windows(5).position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20]).expect("an ECPrivateKey");
    pkcs8[at + 5..at + 37].to_vec()
}

#[tokio::test]
async fn no_table_holds_a_private_key_in_clear() {
    let clients = clients().await;
    let (config, entry) = envelope_set(&clients).await;
    // A session signed by the key, so every table has been written on its behalf.
    let (username, password, _) = create_user(&config, &clients, "envelope-scan", &["read"]).await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    log_in_and_refresh(&login, &refresh, &username, &password).await;

    // The private key, as only KMS can give it (the positive control of the detector).
    let pkcs8 = clients
        .kms
        .decrypt()
        .key_id(&entry.kms_key_id)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(entry.wrapped_private_key.clone().unwrap()))
        .encryption_context(CONTEXT_KEY, CONTEXT_PURPOSE)
        .encryption_context(CONTEXT_KID, &entry.kid)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap()
        .into_inner();
    let d = scalar(&pkcs8);
    assert!(holds_private_key(&[b"x".as_slice(), &pkcs8].concat(), &d), "the detector finds a key where one is");
    assert!(!holds_private_key(entry.wrapped_private_key.as_deref().unwrap(), &d), "the ciphertext is no key");

    let stack = tokenauth_tests::config();
    let tables = [
        &config.keys_table,
        &stack.keys_table,
        &config.users_table,
        &config.families_table,
        &config.revocations_table,
        &config.source_limits.table,
    ];
    let mut scanned = 0;
    for table in tables {
        let mut pages = clients.dynamodb.scan().table_name(table.as_str()).into_paginator().items().send();
        while let Some(item) = pages.next().await {
            let item = item.unwrap();
            let mut found = Vec::new();
            item.values().for_each(|v| values(v, &mut found));
            for bytes in &found {
                assert!(!holds_private_key(bytes, &d), "{table}: an item holds the private key: {:?}", item.keys());
            }
            scanned += found.len();
        }
    }
    assert!(scanned > 10, "the scan read the tables ({scanned} values)");
}

#[tokio::test]
async fn an_envelope_key_opens_only_under_its_own_kid_and_only_into_its_own_public_key() {
    let clients = clients().await;
    let (_, first) = envelope_set(&clients).await;
    let (_, second) = envelope_set(&clients).await;
    let public = |entry: &KeyEntry| tokenauth::services::keys::live::trusted_key(entry).unwrap();

    let signer = EnvelopeSigner::decrypt(&clients.kms, &first, &public(&first)).await.unwrap();
    let debug = format!("{signer:?}");
    assert!(debug.contains(&first.kid) && debug.len() < first.kid.len() + 40, "Debug shows the kid only: {debug}");
    let claims = serde_json::json!({"sub": "u"});
    assert!(signer.sign_jws(claims.to_string().as_bytes()).await.is_ok());

    // The second entry's ciphertext under the first entry's kid: KMS refuses the context.
    let swapped = KeyEntry { wrapped_private_key: second.wrapped_private_key.clone(), ..first.clone() };
    let refused = EnvelopeSigner::decrypt(&clients.kms, &swapped, &public(&first)).await.unwrap_err();
    assert!(refused.to_string().contains("Decrypt"), "{refused}");
    // Its own ciphertext and kid, but another public key: the key pair does not match.
    let foreign = KeyEntry { public_key: second.public_key.clone(), ..first.clone() };
    let kid_checked = tokenauth::services::keys::live::trusted_key(&foreign).unwrap_err();
    assert!(kid_checked.to_string().contains("thumbprint"), "{kid_checked}");
    let mismatch = EnvelopeSigner::decrypt(&clients.kms, &first, &public(&second)).await.unwrap_err();
    assert!(mismatch.to_string().contains("does not belong to its public key"), "{mismatch}");
    // A retired envelope key's private half is gone from the set.
    let erased = KeyEntry { wrapped_private_key: None, ..first.clone() };
    assert!(EnvelopeSigner::decrypt(&clients.kms, &erased, &public(&first)).await.is_err());
}

#[tokio::test]
async fn an_envelope_key_is_published_verified_and_retired_like_a_kms_key() {
    let clients = clients().await;
    let (config, first) = envelope_set(&clients).await;
    let manager =
        KeyManager::from_config(&config, clients.dynamodb.clone(), clients.kms.clone(), Arc::new(SystemClock));
    manager.add(KeySource::Envelope).await.unwrap();
    manager.promote(true).await.unwrap();
    let retired = manager.retire(true).await.unwrap();
    assert_eq!(retired, KeyStep::Retired { kid: first.kid.clone(), kms_key_id: None }, "no KMS key to delete");
    let set = manager.list().await.unwrap();
    let gone = set.entries.iter().find(|e| e.kid == first.kid).unwrap();
    assert_eq!(gone.wrapped_private_key, None, "a retired envelope key's private half is erased");
    let envelope_key = clients.kms.describe_key().key_id(&first.kms_key_id).send().await.unwrap();
    assert_eq!(
        envelope_key.key_metadata().unwrap().key_state(),
        Some(&aws_sdk_kms::types::KeyState::Enabled),
        "the envelope KMS key itself is never scheduled for deletion"
    );
    // The JWKS publishes the new envelope key alone.
    let discovery = tokenauth::services::discovery::DiscoveryService::from_config(
        &config,
        clients.dynamodb.clone(),
        clients.kms.clone(),
    );
    let jwks: serde_json::Value = serde_json::from_str(&discovery.jwks().await.unwrap().body).unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
    assert_eq!(kids, [set.current().unwrap().kid.as_str()], "the retired key is no longer published");
}
