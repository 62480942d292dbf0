//! What we publish so others can verify our tokens without asking us: the JWKS (RFC 7517)
//! of every trusted key and the authorization-server metadata (RFC 8414). The `jwks`
//! function serves both from the key set, read per request (one `GetItem`; consumers cache
//! for `max-age`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::Serialize;

use crate::error::DependencyError;
use crate::platform::config::Config;
use crate::rules::client_assertion::{ASSERTION_SIGNING_ALGS, TOKEN_PATH};
use crate::rules::clients::GrantType;
use crate::rules::dpop::DPOP_SIGNING_ALGS;
use crate::rules::introspection::INTROSPECTION_PATH;
use crate::rules::keys::set::KeySet;
use crate::services::keys::live::trusted_keys;
use crate::services::keys::AuthenticatedKeys;

/// The path of the JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The path of the RFC 8414 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// A published document: its JSON and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The JSON body.
    pub body: String,
    /// A strong entity tag of the body (quoted, as the `ETag` header carries it).
    pub etag: String,
}

impl Published {
    fn of(body: String) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
        let etag = format!("\"{}\"", B64URL.encode(&digest.as_ref()[..16]));
        Self { body, etag }
    }

    /// Whether an `If-None-Match` value names this document (RFC 9110 §13.1.2, weak
    /// comparison).
    pub fn matches(&self, if_none_match: &str) -> bool {
        if_none_match.trim() == "*"
            || if_none_match.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == self.etag)
    }
}

/// The JWKS of a key set: every pending, current and previous key as a public JWK with
/// `kid`, `alg` and `use: sig`, nothing else.
pub fn jwks(set: &KeySet) -> Result<Published, DependencyError> {
    let keys: Vec<serde_json::Value> = trusted_keys(set)?.iter().map(|k| k.public_jwk().clone()).collect();
    Ok(Published::of(serde_json::json!({ "keys": keys }).to_string()))
}

/// RFC 8414 §2 metadata, every URL under the issuer.
#[derive(Debug, Serialize)]
struct Metadata<'a> {
    issuer: &'a str,
    jwks_uri: String,
    /// `POST /auth/token`: every grant ([`crate::services::token_endpoint`]).
    token_endpoint: String,
    revocation_endpoint: String,
    /// The token endpoint's grants (RFC names); login takes a username and password in its
    /// own request and is not a grant here.
    grant_types_supported: Vec<&'static str>,
    /// Required by RFC 8414; there is no authorization endpoint, so no response type.
    response_types_supported: [&'static str; 0],
    /// `none` (public clients), the two secret methods, and `private_key_jwt` where the
    /// Proofs table records each assertion's `jti` (`PROOFS_TABLE`; without it every
    /// assertion would be refused, so it is not advertised).
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 8414 §2: the algorithms of `private_key_jwt` assertions.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_signing_alg_values_supported: Option<&'static [&'static str]>,
    /// As at the token endpoint: `none` for public clients, whose tokens whoever holds
    /// them may revoke, and the confidential clients' methods (RFC 7009 §2.1).
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 8414 §2: present where `private_key_jwt` is listed just above.
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation_endpoint_auth_signing_alg_values_supported: Option<&'static [&'static str]>,
    /// RFC 7662 introspection, for confidential clients: the secret methods, and
    /// `private_key_jwt` where assertions can be recorded (as at the token endpoint).
    introspection_endpoint: String,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 8414 §2: must be present where `private_key_jwt` is listed just above.
    #[serde(skip_serializing_if = "Option::is_none")]
    introspection_endpoint_auth_signing_alg_values_supported: Option<&'static [&'static str]>,
    /// RFC 9449 §5.1: the proof algorithms login and the token endpoint accept; absent
    /// where DPoP is off (`PROOFS_TABLE` empty), since every proof would be refused there.
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_signing_alg_values_supported: Option<&'static [&'static str]>,
}

/// The metadata document for `issuer` (RFC 8414 §3: the issuer's URL is the base of the
/// others; a trailing `/` is not doubled), saying whether single-use proofs are recorded
/// (`dpop`: a Proofs table, which DPoP proofs and client assertions both need).
pub fn metadata(issuer: &str, dpop: bool) -> Published {
    let base = issuer.trim_end_matches('/');
    let mut auth_methods = vec!["none", "client_secret_basic", "client_secret_post"];
    if dpop {
        auth_methods.push("private_key_jwt");
    }
    let metadata = Metadata {
        issuer,
        jwks_uri: format!("{base}{JWKS_PATH}"),
        token_endpoint: format!("{base}{TOKEN_PATH}"),
        revocation_endpoint: format!("{base}/auth/revoke"),
        grant_types_supported: GrantType::ALL.iter().map(|g| g.as_str()).collect(),
        response_types_supported: [],
        token_endpoint_auth_methods_supported: auth_methods.clone(),
        token_endpoint_auth_signing_alg_values_supported: dpop.then_some(&ASSERTION_SIGNING_ALGS[..]),
        revocation_endpoint_auth_methods_supported: auth_methods.clone(),
        revocation_endpoint_auth_signing_alg_values_supported: dpop.then_some(&ASSERTION_SIGNING_ALGS[..]),
        introspection_endpoint: format!("{base}{INTROSPECTION_PATH}"),
        introspection_endpoint_auth_methods_supported: auth_methods[1..].to_vec(),
        introspection_endpoint_auth_signing_alg_values_supported: dpop.then_some(&ASSERTION_SIGNING_ALGS[..]),
        dpop_signing_alg_values_supported: dpop.then_some(&DPOP_SIGNING_ALGS[..]),
    };
    // Serialising a struct of strings cannot fail.
    Published::of(serde_json::to_string(&metadata).unwrap_or_default())
}

/// The `jwks` function's service.
#[derive(Debug)]
pub struct DiscoveryService {
    keys: AuthenticatedKeys,
    issuer: String,
    max_age_secs: u64,
    dpop: bool,
}

impl DiscoveryService {
    /// The service a deployment configured.
    pub fn from_config(config: &Config, dynamodb: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client) -> Self {
        Self {
            keys: AuthenticatedKeys::from_config(config, dynamodb, kms),
            issuer: config.issuer.clone(),
            max_age_secs: config.jwks_max_age.as_secs(),
            dpop: !config.dpop.proofs_table.is_empty(),
        }
    }

    /// The JWKS as the key set is now, if its signature verifies (only verified keys are
    /// published).
    pub async fn jwks(&self) -> Result<Published, DependencyError> {
        jwks(&self.keys.get().await?)
    }

    /// The metadata.
    pub fn metadata(&self) -> Published {
        metadata(&self.issuer, self.dpop)
    }

    /// `Cache-Control` of both documents: shorter than a new key's publish lead
    /// ([`Config::check`]), so every cache has seen a key before it signs.
    pub fn cache_control(&self) -> String {
        format!("public, max-age={}", self.max_age_secs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_sit_under_the_issuer() {
        for issuer in ["https://auth.example.com", "https://auth.example.com/"] {
            let doc: serde_json::Value = serde_json::from_str(&metadata(issuer, false).body).unwrap();
            assert_eq!(doc["issuer"], issuer, "the issuer exactly as tokens carry it");
            assert_eq!(doc["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
            assert_eq!(doc["token_endpoint"], "https://auth.example.com/auth/token");
            assert_eq!(doc["revocation_endpoint"], "https://auth.example.com/auth/revoke");
            assert_eq!(
                doc["grant_types_supported"],
                serde_json::json!([
                    "refresh_token",
                    "client_credentials",
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                ])
            );
            assert_eq!(doc["response_types_supported"], serde_json::json!([]));
            assert!(doc.get("dpop_signing_alg_values_supported").is_none(), "DPoP off: not advertised");
            assert_eq!(
                doc["token_endpoint_auth_methods_supported"],
                serde_json::json!(["none", "client_secret_basic", "client_secret_post"]),
                "no Proofs table, no replay protection for assertions: private_key_jwt not advertised"
            );
            assert!(doc.get("token_endpoint_auth_signing_alg_values_supported").is_none());
        }
    }

    #[test]
    fn the_metadata_names_introspection_for_confidential_clients() {
        for (proofs, methods) in [
            (true, serde_json::json!(["client_secret_basic", "client_secret_post", "private_key_jwt"])),
            (false, serde_json::json!(["client_secret_basic", "client_secret_post"])),
        ] {
            let doc: serde_json::Value =
                serde_json::from_str(&metadata("https://auth.example.com/", proofs).body).unwrap();
            assert_eq!(doc["introspection_endpoint"], "https://auth.example.com/auth/introspect");
            assert_eq!(
                doc["introspection_endpoint_auth_methods_supported"], methods,
                "never none (a public client may not introspect); private_key_jwt only where assertions are recorded"
            );
            // RFC 8414 §2: MUST be present if private_key_jwt is listed.
            let algs = doc.get("introspection_endpoint_auth_signing_alg_values_supported");
            assert_eq!(algs, proofs.then(|| serde_json::json!(["ES256", "RS256", "PS256"])).as_ref());
            // Revocation: none too (a public client's tokens), else as at the token endpoint.
            let mut revocation = serde_json::json!(["none"]);
            revocation.as_array_mut().unwrap().extend(methods.as_array().unwrap().iter().cloned());
            assert_eq!(doc["revocation_endpoint_auth_methods_supported"], revocation);
            let algs = doc.get("revocation_endpoint_auth_signing_alg_values_supported");
            assert_eq!(algs, proofs.then(|| serde_json::json!(["ES256", "RS256", "PS256"])).as_ref());
        }
    }

    #[test]
    fn the_metadata_lists_the_dpop_algorithms_where_proofs_are_accepted() {
        let doc: serde_json::Value = serde_json::from_str(&metadata("https://auth.example.com", true).body).unwrap();
        assert_eq!(doc["dpop_signing_alg_values_supported"], serde_json::json!(DPOP_SIGNING_ALGS));
        assert_eq!(doc["dpop_signing_alg_values_supported"], serde_json::json!(["ES256"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])
        );
        assert_eq!(
            doc["token_endpoint_auth_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256", "PS256"])
        );
    }

    #[test]
    fn an_etag_matches_itself_weakly_and_in_lists_only() {
        let doc = metadata("https://a.test", true);
        assert!(doc.matches(&doc.etag));
        assert!(doc.matches(&format!("W/{}", doc.etag)));
        assert!(doc.matches(&format!("\"other\", {}", doc.etag)));
        assert!(doc.matches("*"));
        assert!(!doc.matches("\"other\""));
        assert_ne!(doc.etag, metadata("https://b.test", true).etag);
    }
}
