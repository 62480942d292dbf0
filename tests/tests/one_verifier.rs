//! One verifier: the authorizer, revoke (RFC 7009) and revoke-all accept exactly the same
//! access tokens. Every token here is signed by the stack's (emulated) KMS key, so a
//! refusal is about the token's header or claims, never about a foreign signature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde_json::{json, Value};
use tokenauth::edge::authorizer::Authorizer;
use tokenauth::platform::clock::{Clock, SystemClock};
use tokenauth::services::keys::KmsSigner;
use tokenauth::{ApiError, RevocationService, RevokeRequest};
use tokenauth_tests::*;

/// The three paths that accept an access token, as the functions build them.
struct Paths {
    config: tokenauth::Config,
    clients: Clients,
    signer: KmsSigner,
    authorizer: Authorizer,
    revoke: RevocationService,
}

impl Paths {
    async fn new() -> Self {
        let config = config_with(&[("AUTHORIZER_ROUTE_SCOPES", "$default=")]);
        let clients = clients().await;
        let signer = current_kms_signer(&config, &clients).await;
        let authorizer = Authorizer::from_config(&config, clients.dynamodb.clone(), Arc::new(SystemClock));
        authorizer.warm_up().await;
        let revoke = revocation_service(&config, &clients, Arc::new(SystemClock)).await;
        Self { config, clients, signer, authorizer, revoke }
    }

    /// `header.payload` signed by the KMS key (one `kms:Sign` of its digest).
    async fn sign(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
        let signature = self.signer.sign_digest(digest.as_ref().try_into().unwrap()).await.unwrap();
        format!("{input}.{}", B64URL.encode(signature))
    }

    fn header(&self) -> Value {
        json!({"alg": self.signer.algorithm().as_str(), "typ": "at+jwt", "kid": self.signer.kid()})
    }

    /// Claims as our issuer writes them, for a live session of a user of its own (revoke-all
    /// acts only for a bearer whose session is alive), each token with its own `jti`.
    async fn claims(&self) -> Value {
        let (username, password, user_id) = create_user(&self.config, &self.clients, "agree", &["read"]).await;
        let login = login_service(&self.config, &self.clients, Arc::new(SystemClock)).await;
        let tokens = login_tokens(&login, &username, &password).await;
        let now = SystemClock.now();
        json!({"iss": self.config.issuer, "sub": user_id, "aud": self.config.audience,
               "exp": now + 600, "iat": now, "jti": tokenauth::rules::token::random_id(), "client_id": "first-party",
               "scope": "read write", "sid": family_of(tokens["refresh_token"].as_str().unwrap())})
    }

    /// Whether each path accepts `token`, whose `jti` is `jti`: the authorizer allows it,
    /// revoke denylists its `jti`, revoke-all ends its user's sessions.
    async fn verdicts(&self, token: &str, jti: &str) -> [bool; 3] {
        let event = event_text_with("authorizer-http-api-v2.json", &format!("Bearer {token}"));
        let answer = serde_json::to_value(self.authorizer.handle(&event).await.unwrap()).unwrap();
        let authorizer = answer["isAuthorized"] == true;

        // Before revoke: revoke-all refuses a bearer whose jti is revoked.
        let revoke_all =
            match self.revoke.revoke_all(tokenauth::services::account::Presented::Bearer(token), None, None).await {
                Ok(_) => true,
                Err(ApiError::InvalidToken) => false,
                Err(e) => panic!("revoke-all failed otherwise: {e}"),
            };

        let before = revocations_of(&self.config, &self.clients, jti).await.len();
        let request = RevokeRequest { token_type_hint: Some("access_token".into()), ..RevokeRequest::anonymous(token) };
        self.revoke.revoke(request, None).await.unwrap();
        let revoke = revocations_of(&self.config, &self.clients, jti).await.len() > before;
        [authorizer, revoke, revoke_all]
    }

    /// Signs `claims` under `header` and asserts the three paths agree on `accepted`.
    async fn check(&self, name: &str, header: &Value, payload: &[u8], jti: &str, accepted: bool) {
        let token = self.sign(header.to_string().as_bytes(), payload).await;
        let verdicts = self.verdicts(&token, jti).await;
        assert_eq!(verdicts, [accepted; 3], "{name}: [authorizer, revoke, revoke-all]");
    }
}

fn jti_of(claims: &Value) -> String {
    claims["jti"].as_str().unwrap_or("no-jti").to_owned()
}

#[tokio::test]
async fn authorizer_revoke_and_revoke_all_accept_exactly_the_same_tokens() {
    let p = Paths::new().await;
    let now = SystemClock.now();
    let leeway = p.config.token_leeway.as_secs();
    let header = p.header();

    // (name, change to the claims, accepted)
    type Change = Box<dyn Fn(&mut Value)>;
    let remove = |claim: &'static str| -> Change {
        Box::new(move |c: &mut Value| {
            c.as_object_mut().unwrap().remove(claim);
        })
    };
    let set = |claim: &'static str, value: Value| -> Change { Box::new(move |c: &mut Value| c[claim] = value.clone()) };
    let mut cases: Vec<(String, Change, bool)> = vec![
        ("as issued".into(), Box::new(|_: &mut Value| {}), true),
        ("extra claims".into(), Box::new(|c: &mut Value| c["tenant"] = json!({"id": 7, "tags": ["a"]})), true),
        ("aud as an array with ours".into(), set("aud", json!(["other", p.config.audience])), true),
        ("aud as an array without ours".into(), set("aud", json!(["other"])), false),
        ("nbf inside the leeway".into(), set("nbf", json!(now + leeway / 2)), true),
        ("nbf outside the leeway".into(), set("nbf", json!(now + 3_600)), false),
        ("nbf in the past".into(), set("nbf", json!(now - 60)), true),
        ("expired beyond the leeway".into(), set("exp", json!(now - leeway - 5)), false),
        ("iat in the future".into(), set("iat", json!(now + 3_600)), false),
        ("another issuer".into(), set("iss", json!("https://evil.example")), false),
        ("empty sid".into(), set("sid", json!("")), false),
        ("empty client_id".into(), set("client_id", json!("")), false),
        ("empty scope".into(), set("scope", json!("")), true),
        ("exp as a string".into(), set("exp", json!((now + 600).to_string())), false),
    ];
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid"] {
        cases.push((format!("without {claim}"), remove(claim), false));
    }
    for (name, change, accepted) in &cases {
        let mut claims = p.claims().await;
        change(&mut claims);
        p.check(name, &header, claims.to_string().as_bytes(), &jti_of(&claims), *accepted).await;
    }

    // Header variants: another member order and the media-type spelling of `typ` are the
    // same header; a foreign `typ` is not.
    let reordered = json!({"kid": p.signer.kid(), "typ": "application/at+jwt", "alg": p.signer.algorithm().as_str()});
    let claims = p.claims().await;
    p.check("reordered header", &reordered, claims.to_string().as_bytes(), &jti_of(&claims), true).await;
    let mut jwt = p.header();
    jwt["typ"] = json!("JWT");
    let claims = p.claims().await;
    p.check("typ JWT", &jwt, claims.to_string().as_bytes(), &jti_of(&claims), false).await;

    // Invalid UTF-8 (the bytes FF FE) in a member every path ignores: not a JWT claims set.
    let claims = p.claims().await;
    let mut bytes = claims.to_string().replacen('{', r#"{"note":"XX","#, 1).into_bytes();
    let at = bytes.windows(2).position(|w| w == b"XX").unwrap();
    bytes[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    p.check("invalid UTF-8 in an ignored member", &header, &bytes, &jti_of(&claims), false).await;
}

#[tokio::test]
async fn no_mutation_of_a_kms_signed_token_is_accepted_by_any_path() {
    let p = Paths::new().await;
    let claims = p.claims().await;
    let jti = jti_of(&claims);
    let original = p.sign(p.header().to_string().as_bytes(), claims.to_string().as_bytes()).await;
    // The original is never revoked here, so any entry for its jti came from a mutation.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    let mut tried = 0;
    while tried < 40 {
        let mut bytes = original.clone().into_bytes();
        let i = next(bytes.len());
        let byte = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="[next(66)];
        match next(4) {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
        let mutated = String::from_utf8(bytes).unwrap();
        if mutated == original {
            continue;
        }
        tried += 1;
        assert_eq!(p.verdicts(&mutated, &jti).await, [false; 3], "mutation {mutated}");
    }
    assert_eq!(p.verdicts(&original, &jti).await, [true; 3], "the original itself is accepted by all three");
}

#[tokio::test]
async fn an_rsa_kms_key_signs_rs256_tokens_that_our_verifier_and_jsonwebtoken_accept() {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    use tokenauth::rules::keys::KeyAlgorithm;
    use tokenauth::rules::token::{AccessClaims, AccessGrant, RefreshToken};

    let clients = clients().await;
    let key_id = create_signing_key(&clients.kms, aws_sdk_kms::types::KeySpec::Rsa2048).await;
    let config = config();
    let signer = KmsSigner::load(clients.kms.clone(), &key_id).await.unwrap();
    assert_eq!(signer.algorithm(), KeyAlgorithm::RS256, "the key decides the algorithm");

    let issuer = tokenauth::services::issuer_for(Arc::new(signer), &config);
    let grant =
        AccessGrant { subject: "u-rsa", client_id: "first-party", scope: "read", session_id: "s-rsa", bound_to: None };
    let now = SystemClock.now();
    let token = issuer.issue(&grant, &RefreshToken::new_family(), now).await.unwrap().access_token;

    // Ours, with the key as KMS hands it out.
    let verifier = tokenauth::services::verifier_for(&config);
    verifier.replace_keys(vec![tokenauth::services::keys::fetch_trusted_key(&clients.kms, &key_id).await.unwrap()]);
    assert_eq!(verifier.verify(&token, now).unwrap().sub, "u-rsa");

    // jsonwebtoken, with the public key fetched from KMS.
    let der = public_key_der(&clients, &key_id).await;
    let key = DecodingKey::from_rsa_pem(pem(&der).as_bytes()).unwrap();
    assert_eq!(decode_header(&token).unwrap().alg, Algorithm::RS256);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&config.audience]);
    validation.set_issuer(&[&config.issuer]);
    let claims = decode::<AccessClaims>(&token, &key, &validation).expect("jsonwebtoken verifies it").claims;
    assert_eq!((claims.sub.as_str(), claims.sid.as_deref()), ("u-rsa", Some("s-rsa")));
}
