//! Configuration: every environment variable the functions read, read here and only here,
//! once at cold start, through one parser (`Env`) whose errors name the variable.
//! Settings that depend on each other are checked against each other before a function
//! starts ([`Config::check`]).
//!
//! AWS endpoints, region and credentials are not here: the SDK reads the standard
//! variables (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_KMS`, ...).

use std::time::Duration;

use crate::error::ConfigError;
use crate::platform::aws::TrustRoots;
use crate::rules::keys::set::{KeyKind, KeyTimings};
use crate::rules::revoke::CUT_OFF_MARGIN_SECS;
use crate::rules::routes::{ResponseStyle, RouteRule};
use crate::rules::session_context::OnContextChange;

/// Everything a function needs to know about its deployment. Each function takes the
/// part it needs; a variable another function needs has a default or is required by all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `USERS_TABLE` (required): the Users table.
    pub users_table: String,
    /// `FAMILIES_TABLE` (required): the refresh-token Families table.
    pub families_table: String,
    /// `REVOCATIONS_TABLE` (optional for login; default empty): the Revocations table.
    pub revocations_table: String,
    /// `KEYS_TABLE` (required): the Keys table, whose one item is the signing key set.
    pub keys_table: String,
    /// `TOKEN_ISSUER` (required): the `iss` claim.
    pub issuer: String,
    /// `TOKEN_AUDIENCE` (required): the `aud` claim.
    pub audience: String,
    /// `CLIENT_ID` (default `first-party`): the `client_id` claim of tokens issued by login.
    pub client_id: String,
    /// `CLIENTS_TABLE` (default empty: no registry, only the first-party client's refresh
    /// grant): the Clients table of the token endpoint and introspection.
    pub clients_table: String,
    /// `ACCESS_TOKEN_AUDIENCE` (default: `TOKEN_AUDIENCE`): the audiences this API's
    /// authorizer (and revoke) accepts, separated by spaces or commas; a token for any
    /// other API is refused.
    pub accepted_audiences: Vec<String>,
    /// `ACCESS_TOKEN_TTL_SECS` (default 900 = 15 minutes).
    pub access_token_ttl: Duration,
    /// `TOKEN_LEEWAY_SECS` (default 30, at least 2, below the access-token lifetime): the clock leeway
    /// every verifier allows on `exp`, `nbf` and `iat`. The one clock leeway: revocation
    /// entries and the authorizer's look-back derive their lifetimes from it.
    pub token_leeway: Duration,
    /// `KEY_SET_RELOAD_SECS` (default 60): how often signers (login, refresh) and revoke
    /// re-read the key set. The authorizer re-reads it with its revocation poll.
    pub key_reload: Duration,
    /// `KEY_PUBLISH_LEAD_SECS` (default 43 200 = 12 hours): how long a new key is published
    /// before it may sign. Longer than `JWKS_MAX_AGE_SECS` and every reload interval, and
    /// shorter than the envelope keys' max age.
    pub key_publish_lead: Duration,
    /// `KEY_MAX_AGE_DAYS` (default 90): the scheduled rotation replaces the current key at
    /// this age (adding its successor `KEY_PUBLISH_LEAD_SECS` before).
    pub key_max_age: Duration,
    /// `SIGNING_KEY_KIND` (`kms`, the default, or `envelope`): the kind of key the
    /// scheduled rotation adds (see [`KeyKind`]); a change of kind starts a migration at the
    /// next rotation run.
    pub signing_key_kind: KeyKind,
    /// `ENVELOPE_KEY_ID` (default empty; needed where envelope keys are added): the
    /// symmetric KMS key under which envelope keys' private halves are encrypted.
    pub envelope_key_id: String,
    /// `ENVELOPE_KEY_MAX_AGE_SECS` (default 86 400 = a day): the scheduled rotation replaces
    /// a current envelope key at this age, so a private key in a signer's memory signs for
    /// at most this long.
    pub envelope_key_max_age: Duration,
    /// `JWKS_MAX_AGE_SECS` (default 3600): the JWKS `Cache-Control: max-age`.
    pub jwks_max_age: Duration,
    /// `KEY_SET_TAG` (default `tokenauth`): the value of the `tokenauth:key-set` tag on every
    /// KMS key of the set; signers may use only keys that carry it.
    pub key_set_tag: String,
    /// `SEALING_KEY_ID` (default empty; needed where the first key is added: the
    /// key-rotation function and `authctl`): the symmetric KMS key under which the
    /// sealing secret of refresh-token successors is generated.
    pub sealing_key_id: String,
    /// `KEY_SET_VERIFY_KEY` (default empty: no key set is trusted): the public half of the
    /// key set's signing key, base64 DER (as `kms:GetPublicKey` answers it), with which every
    /// reader checks the set's signature offline.
    pub key_set_verify_key: String,
    /// `KEY_SET_SIGNING_KEY_ID` (default empty: this caller cannot write the key set; set
    /// for the key-rotation function and `authctl`): the KMS key (ECC_NIST_P256,
    /// SIGN_VERIFY) that signs every version of the key set.
    pub key_set_signing_key_id: String,
    /// `SIGNING_KEY_POLICY` (default empty: KMS's default key policy, as the local stack
    /// leaves it): the key policy, a JSON document, every signing key is created with (the
    /// key-rotation function and `authctl keys`). The template renders it naming the roles
    /// that may use the key, so a broad IAM grant elsewhere cannot.
    pub signing_key_policy: Option<String>,
    /// `KEY_DELETION_DAYS` (default 30, 7 to 30): KMS's waiting period before a retired or
    /// revoked key is deleted.
    pub key_deletion_days: i32,
    /// `REFRESH_TOKEN_TTL_SECS` (default 2 592 000 = 30 days): a family's absolute lifetime.
    pub refresh_token_ttl: Duration,
    /// `REFRESH_IDLE_TTL_SECS` (default 604 800 = 7 days): a family dies after this long unused.
    pub refresh_idle_ttl: Duration,
    /// `LOGIN_MAX_FAILURES` (default 5): failed logins per username before 429.
    pub login_max_failures: u32,
    /// `LOGIN_FAILURE_WINDOW_SECS` (default 900 = 15 minutes): the failure-counting window.
    pub login_failure_window: Duration,
    /// `DEVICE_TOKEN_TTL_SECS` (default 7 776 000 = 90 days): how long a device that logged
    /// in stays exempt from the username's lockout (its own counter still applies).
    pub device_token_ttl: Duration,
    /// `REFRESH_LEEWAY_SECS` (default 30; 0 disables): how long after a rotation the
    /// previous token still gets the same successor (exactly-once retry).
    pub refresh_leeway: Duration,
    /// `REUSE_REVOKES` (`user` or `family`, default `user`): what a detected refresh-token
    /// reuse revokes.
    pub reuse_revokes: ReuseScope,
    /// `ON_CONTEXT_CHANGE` (`record` or `end`, default `record`): what a refresh from
    /// another network or user-agent family than the session's last use does: an audit line
    /// and a metric, or that and the session ended ([`crate::rules::session_context`]).
    pub on_context_change: OnContextChange,
    /// The per-source limits of login and refresh.
    pub source_limits: SourceLimits,
    /// The authorizer's own settings.
    pub authorizer: AuthorizerSettings,
    /// Sender-constrained sessions (RFC 9449), for login, refresh and the authorizer.
    pub dpop: DpopSettings,
    /// `AWS_CA_BUNDLE` (default: the Amazon Trust Services roots): the CA certificates the
    /// SDK's HTTPS client trusts.
    pub trust_roots: TrustRoots,
}

/// What a detected refresh-token reuse revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReuseScope {
    /// Only the family the reused token belongs to.
    Family,
    /// Every family of that user.
    User,
}

/// The per-source limits of login and refresh ([`crate::rules::limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimits {
    /// `LIMITS_TABLE` (default empty: no per-source limit): the Limits table.
    pub table: String,
    /// `LOGIN_LIMIT_PER_SOURCE` (default 60): logins per source address per window.
    pub login_max: u32,
    /// `REFRESH_LIMIT_PER_SOURCE` (default 300): refreshes per source address per window.
    pub refresh_max: u32,
    /// `SOURCE_LIMIT_WINDOW_SECS` (default 60): the counting window.
    pub window: Duration,
}

/// DPoP (RFC 9449): where proofs' `jti`s are remembered, how old a proof may be, and
/// whether bearer tokens are still accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// `PROOFS_TABLE` (default empty: DPoP is off, every proof is refused and a bound token
    /// is not accepted): the table in which each accepted proof's `jti` is recorded once.
    pub proofs_table: String,
    /// `DPOP_PROOF_MAX_AGE_SECS` (default 60): the oldest proof (`iat`) accepted; a proof
    /// from up to `TOKEN_LEEWAY_SECS` ahead is accepted too.
    pub proof_max_age: Duration,
    /// `REQUIRE_DPOP` (`false`, the default, or `true`): the authorizer refuses access
    /// tokens that are not DPoP-bound.
    pub required: bool,
    /// `PUBLIC_BASE_URL` (default none: `https://` and the domain API Gateway reports): the
    /// scheme, host and base path clients call the API at (a custom domain with a base
    /// path mapping), against which a proof's `htu` is checked.
    pub public_base_url: Option<String>,
}

/// Settings only the authorizer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// `AUTHORIZER_RESPONSE` (`simple` or `iam`, default `simple`): payload 2.0 answers.
    pub style: ResponseStyle,
    /// `AUTHORIZER_ROUTE_SCOPES` (default none): `METHOD /path=scope ...` rules separated
    /// by `;`; the account routes are added unless named ([`RouteRule::with_account_routes`]).
    pub rules: Vec<RouteRule>,
    /// `REVOCATION_POLL_SECS` (default 5; 0 polls on every request): poll the
    /// Revocations table at most this often per warm instance.
    pub poll_every: Duration,
    /// `REVOCATION_MAX_STALENESS_SECS` (default 60, at least 3 polls): serve a failed
    /// poll's state this long, then deny everything until a poll succeeds.
    pub max_staleness: Duration,
    /// `AUTHORIZER_METRICS_SECS` (default 10; 0 writes on every request): how often an
    /// instance writes its request counts and latencies as EMF.
    pub metrics_every: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment in production, a map in
    /// tests), then checks related settings against each other.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let config = Self {
            users_table: env.required("USERS_TABLE")?,
            families_table: env.required("FAMILIES_TABLE")?,
            revocations_table: env.text("REVOCATIONS_TABLE", ""),
            keys_table: env.required("KEYS_TABLE")?,
            issuer: env.required("TOKEN_ISSUER")?,
            audience: env.required("TOKEN_AUDIENCE")?,
            client_id: env.text("CLIENT_ID", "first-party"),
            clients_table: env.text("CLIENTS_TABLE", ""),
            accepted_audiences: match env.optional("ACCESS_TOKEN_AUDIENCE") {
                Some(list) => {
                    let audiences: Vec<String> =
                        list.split([' ', ',']).filter(|a| !a.is_empty()).map(str::to_owned).collect();
                    if audiences.is_empty() {
                        return Err(ConfigError::Invalid {
                            name: "ACCESS_TOKEN_AUDIENCE",
                            reason: "audiences separated by spaces or commas",
                        });
                    }
                    audiences
                }
                None => vec![env.required("TOKEN_AUDIENCE")?],
            },
            access_token_ttl: env.secs("ACCESS_TOKEN_TTL_SECS", 900, Zero::Refused)?,
            token_leeway: env.secs("TOKEN_LEEWAY_SECS", 30, Zero::Allowed)?,
            key_reload: env.secs("KEY_SET_RELOAD_SECS", 60, Zero::Refused)?,
            key_publish_lead: env.secs("KEY_PUBLISH_LEAD_SECS", 12 * 3600, Zero::Refused)?,
            signing_key_kind: env.choice(
                "SIGNING_KEY_KIND",
                "kms or envelope",
                &[("kms", KeyKind::Kms), ("envelope", KeyKind::Envelope)],
            )?,
            envelope_key_id: env.text("ENVELOPE_KEY_ID", ""),
            envelope_key_max_age: env.secs("ENVELOPE_KEY_MAX_AGE_SECS", 24 * 3600, Zero::Refused)?,
            key_max_age: Duration::from_secs(u64::from(env.count("KEY_MAX_AGE_DAYS", 90)?) * 24 * 3600),
            jwks_max_age: env.secs("JWKS_MAX_AGE_SECS", 3600, Zero::Allowed)?,
            key_set_tag: env.text("KEY_SET_TAG", "tokenauth"),
            sealing_key_id: env.text("SEALING_KEY_ID", ""),
            key_set_verify_key: env.text("KEY_SET_VERIFY_KEY", ""),
            key_set_signing_key_id: env.text("KEY_SET_SIGNING_KEY_ID", ""),
            signing_key_policy: match env.optional("SIGNING_KEY_POLICY") {
                Some(policy) if !serde_json::from_str::<serde_json::Value>(&policy).is_ok_and(|p| p.is_object()) => {
                    return Err(ConfigError::Invalid {
                        name: "SIGNING_KEY_POLICY",
                        reason: "a JSON key policy document",
                    })
                }
                policy => policy,
            },
            key_deletion_days: match env.count("KEY_DELETION_DAYS", 30)? {
                days @ 7..=30 => i32::try_from(days).unwrap_or(30),
                _ => return Err(ConfigError::Invalid { name: "KEY_DELETION_DAYS", reason: "7 to 30 (days)" }),
            },
            refresh_token_ttl: env.secs("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600, Zero::Refused)?,
            refresh_idle_ttl: env.secs("REFRESH_IDLE_TTL_SECS", 7 * 24 * 3600, Zero::Refused)?,
            login_max_failures: env.count("LOGIN_MAX_FAILURES", 5)?,
            login_failure_window: env.secs("LOGIN_FAILURE_WINDOW_SECS", 900, Zero::Refused)?,
            device_token_ttl: env.secs("DEVICE_TOKEN_TTL_SECS", 90 * 24 * 3600, Zero::Refused)?,
            refresh_leeway: env.secs("REFRESH_LEEWAY_SECS", 30, Zero::Allowed)?,
            reuse_revokes: env.choice(
                "REUSE_REVOKES",
                "`user` or `family`",
                &[("user", ReuseScope::User), ("family", ReuseScope::Family)],
            )?,
            on_context_change: env.choice(
                "ON_CONTEXT_CHANGE",
                "`record` or `end`",
                &[("record", OnContextChange::Record), ("end", OnContextChange::End)],
            )?,
            source_limits: SourceLimits {
                table: env.text("LIMITS_TABLE", ""),
                login_max: env.count("LOGIN_LIMIT_PER_SOURCE", 60)?,
                refresh_max: env.count("REFRESH_LIMIT_PER_SOURCE", 300)?,
                window: env.secs("SOURCE_LIMIT_WINDOW_SECS", 60, Zero::Refused)?,
            },
            authorizer: AuthorizerSettings {
                style: env.choice(
                    "AUTHORIZER_RESPONSE",
                    "`simple` or `iam`",
                    &[("simple", ResponseStyle::Simple), ("iam", ResponseStyle::Iam)],
                )?,
                rules: RouteRule::parse_list(&env.text("AUTHORIZER_ROUTE_SCOPES", ""))
                    .map(RouteRule::with_account_routes)
                    .map_err(|_| ConfigError::Invalid {
                        name: "AUTHORIZER_ROUTE_SCOPES",
                        reason: "`METHOD /path=scope ...` rules separated by `;`",
                    })?,
                poll_every: env.secs("REVOCATION_POLL_SECS", 5, Zero::Allowed)?,
                max_staleness: env.secs("REVOCATION_MAX_STALENESS_SECS", 60, Zero::Refused)?,
                metrics_every: env.secs("AUTHORIZER_METRICS_SECS", 10, Zero::Allowed)?,
            },
            dpop: DpopSettings {
                proofs_table: env.text("PROOFS_TABLE", ""),
                proof_max_age: env.secs("DPOP_PROOF_MAX_AGE_SECS", 60, Zero::Refused)?,
                required: env.choice("REQUIRE_DPOP", "`false` or `true`", &[("false", false), ("true", true)])?,
                public_base_url: match env.optional("PUBLIC_BASE_URL") {
                    Some(base) if !base.starts_with("https://") && !base.starts_with("http://") => {
                        return Err(ConfigError::Invalid {
                            name: "PUBLIC_BASE_URL",
                            reason: "an http(s) URL: scheme, host and base path",
                        })
                    }
                    base => base.map(|b| b.trim_end_matches('/').to_owned()),
                },
            },
            trust_roots: TrustRoots::from_path(env.optional(TrustRoots::VARIABLE).as_deref())?,
        };
        config.check()?;
        Ok(config)
    }

    /// Settings that only make sense together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let (poll, staleness) = (self.authorizer.poll_every, self.authorizer.max_staleness);
        if poll * 3 > staleness {
            return Err(ConfigError::Inconsistent(format!(
                "REVOCATION_POLL_SECS ({}) must be at most a third of REVOCATION_MAX_STALENESS_SECS ({}): a warm \
                 authorizer that misses a poll or two must not start denying every request",
                poll.as_secs(),
                staleness.as_secs()
            )));
        }
        if self.token_leeway.as_secs() < CUT_OFF_MARGIN_SECS {
            return Err(ConfigError::Inconsistent(format!(
                "TOKEN_LEEWAY_SECS ({}) must be at least {CUT_OFF_MARGIN_SECS}: tokens issued right after an \
                 account change carry an iat up to that far ahead",
                self.token_leeway.as_secs()
            )));
        }
        if self.token_leeway >= self.access_token_ttl {
            return Err(ConfigError::Inconsistent(format!(
                "TOKEN_LEEWAY_SECS ({}) must be below ACCESS_TOKEN_TTL_SECS ({})",
                self.token_leeway.as_secs(),
                self.access_token_ttl.as_secs()
            )));
        }
        let slowest_reader = self.jwks_max_age.max(self.key_reload).max(self.authorizer.poll_every);
        if self.key_publish_lead <= slowest_reader {
            return Err(ConfigError::Inconsistent(format!(
                "KEY_PUBLISH_LEAD_SECS ({}) must be longer than JWKS_MAX_AGE_SECS, KEY_SET_RELOAD_SECS and \
                 REVOCATION_POLL_SECS (the longest is {} s): a new key must be known everywhere before it signs",
                self.key_publish_lead.as_secs(),
                slowest_reader.as_secs()
            )));
        }
        if self.signing_key_kind == KeyKind::Envelope && self.envelope_key_max_age <= self.key_publish_lead {
            return Err(ConfigError::Inconsistent(format!(
                "ENVELOPE_KEY_MAX_AGE_SECS ({}) must be longer than KEY_PUBLISH_LEAD_SECS ({}): each envelope key \
                 is published that long before it signs",
                self.envelope_key_max_age.as_secs(),
                self.key_publish_lead.as_secs()
            )));
        }
        if self.key_max_age <= self.key_publish_lead {
            return Err(ConfigError::Inconsistent(format!(
                "KEY_MAX_AGE_DAYS ({} s) must be longer than KEY_PUBLISH_LEAD_SECS ({} s)",
                self.key_max_age.as_secs(),
                self.key_publish_lead.as_secs()
            )));
        }
        Ok(())
    }

    /// The gates of the key lifecycle. A previous key is retired only once no signer can
    /// still be using it and its last token has expired by any verifier's clock (the token
    /// lifetime plus twice the leeway). A signer uses the key it holds until a re-read
    /// succeeds, at most the staleness bound ([`Config::key_set_max_staleness`]) after its
    /// last good read, not only the reload interval: a signer whose reads failed around the
    /// promotion signs with the old key that long.
    pub fn key_timings(&self) -> KeyTimings {
        KeyTimings {
            publish_lead: self.key_publish_lead,
            retire_after: self.key_set_max_staleness() + self.access_token_ttl + 2 * self.token_leeway,
            max_age: self.key_max_age,
            envelope_max_age: self.envelope_key_max_age,
        }
    }

    /// How long signers and revoke rely on the key set after their last good read: three
    /// reload intervals, so a read or two may fail without a 503, while an emergency revoke
    /// still reaches them within a bound.
    pub fn key_set_max_staleness(&self) -> Duration {
        3 * self.key_reload
    }

    /// How long a denylist entry written now must live: a token issued up to now expires
    /// within the access-token lifetime and is accepted a leeway past that by a verifier
    /// whose clock may run a leeway ahead of the writer's.
    pub fn revocation_lifetime(&self) -> Duration {
        self.access_token_ttl + 2 * self.token_leeway
    }

    /// How long after a token's `exp` a denylist entry for it must live (its `exp` is by
    /// the issuer's clock; see [`Config::revocation_lifetime`]).
    pub fn revocation_grace(&self) -> Duration {
        2 * self.token_leeway
    }

    /// How far back a cold authorizer reads the denylist: every entry that may still be
    /// alive, one more leeway for the writer's clock.
    pub fn revocation_lookback(&self) -> Duration {
        self.revocation_lifetime() + self.token_leeway
    }

    /// The window a DPoP proof made at `now` must fall in: `DPOP_PROOF_MAX_AGE_SECS` back,
    /// the one clock leeway ahead.
    pub fn proof_window(&self, now: u64) -> crate::rules::dpop::ProofWindow {
        crate::rules::dpop::ProofWindow {
            now,
            max_age: self.dpop.proof_max_age.as_secs(),
            leeway: self.token_leeway.as_secs(),
        }
    }
}

/// Whether this process runs as a Lambda function, or under `cargo lambda watch`:
/// `AWS_LAMBDA_FUNCTION_NAME`, which the runtime sets, not the deployment.
pub fn running_in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// Whether 0 is an acceptable number of seconds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Allowed,
    Refused,
}

/// The one reader of variables: blank counts as unset, numbers are whole, every error
/// names its variable.
struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    fn text(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    fn number(&self, name: &'static str, default: u64, zero: Zero, reason: &'static str) -> Result<u64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 || zero == Zero::Allowed => Ok(n),
                _ => Err(ConfigError::Invalid { name, reason }),
            },
        }
    }

    fn secs(&self, name: &'static str, default: u64, zero: Zero) -> Result<Duration, ConfigError> {
        let reason = match zero {
            Zero::Allowed => "a whole number of seconds (0 disables)",
            Zero::Refused => "a whole number of seconds above 0",
        };
        self.number(name, default, zero, reason).map(Duration::from_secs)
    }

    fn count(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        let n = self.number(name, u64::from(default), Zero::Refused, "a whole number above 0")?;
        u32::try_from(n).map_err(|_| ConfigError::Invalid { name, reason: "a whole number above 0" })
    }

    /// One of `options` (the first is the default).
    fn choice<T: Copy>(
        &self,
        name: &'static str,
        reason: &'static str,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        match self.optional(name) {
            None => Ok(options[0].1),
            Some(v) => options
                .iter()
                .find(|(key, _)| *key == v)
                .map(|(_, value)| *value)
                .ok_or(ConfigError::Invalid { name, reason }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn complete() -> HashMap<&'static str, String> {
        [
            ("USERS_TABLE", "users"),
            ("FAMILIES_TABLE", "families"),
            ("KEYS_TABLE", "keys"),
            ("TOKEN_ISSUER", "https://auth.example.com"),
            ("TOKEN_AUDIENCE", "api"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn load(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| env.get(name).cloned())
    }

    fn with(name: &'static str, value: &str) -> Result<Config, ConfigError> {
        let mut env = complete();
        env.insert(name, value.to_owned());
        load(&env)
    }

    #[test]
    fn applies_documented_defaults() {
        let config = load(&complete()).expect("complete config loads");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.token_leeway, Duration::from_secs(30));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(2_592_000));
        assert_eq!(config.refresh_idle_ttl, Duration::from_secs(604_800));
        assert_eq!(config.login_max_failures, 5);
        assert_eq!(config.login_failure_window, Duration::from_secs(900));
        assert_eq!(config.device_token_ttl, Duration::from_secs(7_776_000));
        assert_eq!(config.client_id, "first-party");
        assert_eq!(config.refresh_leeway, Duration::from_secs(30));
        assert_eq!(config.reuse_revokes, ReuseScope::User);
        assert_eq!(config.on_context_change, OnContextChange::Record, "a context change is recorded, not acted on");
        assert_eq!(config.key_reload, Duration::from_secs(60));
        assert_eq!(config.key_publish_lead, Duration::from_secs(43_200));
        assert_eq!(config.key_max_age, Duration::from_secs(90 * 86_400));
        assert_eq!(config.signing_key_kind, KeyKind::Kms, "KMS-held keys unless a deployment chooses");
        assert_eq!(config.envelope_key_max_age, Duration::from_secs(86_400), "envelope keys: daily");
        assert_eq!(config.jwks_max_age, Duration::from_secs(3600));
        assert_eq!(config.key_set_tag, "tokenauth");
        assert_eq!(config.key_deletion_days, 30);
        assert_eq!(config.signing_key_policy, None, "KMS's default key policy");
        assert_eq!(
            config.source_limits,
            SourceLimits { table: String::new(), login_max: 60, refresh_max: 300, window: Duration::from_secs(60) }
        );
        assert_eq!(
            config.key_timings(),
            KeyTimings {
                publish_lead: Duration::from_secs(43_200),
                retire_after: Duration::from_secs(3 * 60 + 900 + 2 * 30),
                max_age: Duration::from_secs(90 * 86_400),
                envelope_max_age: Duration::from_secs(86_400),
            }
        );
        assert_eq!(config.authorizer.style, ResponseStyle::Simple);
        // Only the account routes, which need a valid token and no scope.
        let account = RouteRule::parse_list(crate::rules::routes::ACCOUNT_ROUTES).expect("account routes");
        assert_eq!(config.authorizer.rules, account);
        assert_eq!(config.authorizer.poll_every, Duration::from_secs(5));
        assert_eq!(config.authorizer.max_staleness, Duration::from_secs(60));
        assert_eq!(config.trust_roots, TrustRoots::AmazonTrustServices);
    }

    #[test]
    fn leeway_zero_disables_and_reuse_scope_parses() {
        let mut env = complete();
        env.insert("REFRESH_LEEWAY_SECS", "0".to_owned());
        env.insert("REUSE_REVOKES", "family".to_owned());
        let config = load(&env).expect("valid");
        assert_eq!(config.refresh_leeway, Duration::ZERO);
        assert_eq!(config.reuse_revokes, ReuseScope::Family);
        env.insert("REUSE_REVOKES", "everything".to_owned());
        assert!(load(&env).expect_err("invalid").to_string().contains("REUSE_REVOKES"));
    }

    #[test]
    fn on_context_change_is_record_or_end() {
        let mut env = complete();
        env.insert("ON_CONTEXT_CHANGE", "end".to_owned());
        assert_eq!(load(&env).expect("valid").on_context_change, OnContextChange::End);
        env.insert("ON_CONTEXT_CHANGE", "record".to_owned());
        assert_eq!(load(&env).expect("valid").on_context_change, OnContextChange::Record);
        env.insert("ON_CONTEXT_CHANGE", "revoke".to_owned());
        assert!(load(&env).expect_err("invalid").to_string().contains("ON_CONTEXT_CHANGE"));
    }

    #[test]
    fn source_limits_parse_and_refuse_a_zero_limit_or_window() {
        let mut env = complete();
        env.insert("LIMITS_TABLE", "limits".to_owned());
        env.insert("LOGIN_LIMIT_PER_SOURCE", "7".to_owned());
        env.insert("REFRESH_LIMIT_PER_SOURCE", "9".to_owned());
        env.insert("SOURCE_LIMIT_WINDOW_SECS", "10".to_owned());
        let limits = load(&env).expect("valid").source_limits;
        assert_eq!(
            limits,
            SourceLimits { table: "limits".into(), login_max: 7, refresh_max: 9, window: Duration::from_secs(10) }
        );
        for name in ["LOGIN_LIMIT_PER_SOURCE", "REFRESH_LIMIT_PER_SOURCE", "SOURCE_LIMIT_WINDOW_SECS"] {
            assert!(with(name, "0").expect_err("zero refused").to_string().contains(name));
        }
    }

    #[test]
    fn names_each_missing_variable() {
        for name in ["USERS_TABLE", "FAMILIES_TABLE", "KEYS_TABLE", "TOKEN_ISSUER", "TOKEN_AUDIENCE"] {
            let mut env = complete();
            env.remove(name);
            let err = load(&env).expect_err("a required variable is missing");
            assert_eq!(err, ConfigError::Missing(name));
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn treats_blank_required_variable_as_missing() {
        let mut env = complete();
        env.insert("TOKEN_ISSUER", "  ".to_owned());
        assert_eq!(load(&env), Err(ConfigError::Missing("TOKEN_ISSUER")));
    }

    #[test]
    fn names_the_variable_that_does_not_parse() {
        for (name, value) in [
            ("ACCESS_TOKEN_TTL_SECS", "15m"),
            ("ACCESS_TOKEN_TTL_SECS", "0"),
            ("TOKEN_LEEWAY_SECS", "-1"),
            ("TOKEN_LEEWAY_SECS", "1"),
            ("LOGIN_MAX_FAILURES", "0"),
            ("LOGIN_MAX_FAILURES", "99999999999"),
            ("REVOCATION_POLL_SECS", "1.5"),
            ("REVOCATION_MAX_STALENESS_SECS", "0"),
            ("AUTHORIZER_RESPONSE", "policy"),
            ("AUTHORIZER_ROUTE_SCOPES", "GET api=read"),
            ("AWS_CA_BUNDLE", "/nonexistent/tokenauth/ca.pem"),
            ("KEY_DELETION_DAYS", "6"),
            ("KEY_DELETION_DAYS", "31"),
            ("KEY_SET_RELOAD_SECS", "0"),
            ("KEY_MAX_AGE_DAYS", "0"),
            ("SIGNING_KEY_POLICY", "{not json"),
            ("SIGNING_KEY_POLICY", "[]"),
            ("SIGNING_KEY_KIND", "hsm"),
            ("ENVELOPE_KEY_MAX_AGE_SECS", "0"),
        ] {
            let err = with(name, value).expect_err(&format!("{name}={value} must be refused"));
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn a_new_key_must_be_published_longer_than_anyone_caches_the_key_set() {
        let mut env = complete();
        env.insert("JWKS_MAX_AGE_SECS", "600".to_owned());
        env.insert("KEY_PUBLISH_LEAD_SECS", "601".to_owned());
        assert!(load(&env).is_ok(), "longer than the JWKS max-age and every reload interval");
        env.insert("KEY_PUBLISH_LEAD_SECS", "600".to_owned());
        let err = load(&env).expect_err("no longer than the JWKS max-age");
        assert!(err.to_string().contains("KEY_PUBLISH_LEAD_SECS") && err.to_string().contains("600 s"), "{err}");
        env.insert("JWKS_MAX_AGE_SECS", "0".to_owned());
        env.insert("KEY_SET_RELOAD_SECS", "700".to_owned());
        assert!(load(&env).is_err(), "no longer than the signers' reload interval");
        env.insert("KEY_SET_RELOAD_SECS", "60".to_owned());
        env.insert("KEY_PUBLISH_LEAD_SECS", "86400".to_owned());
        env.insert("KEY_MAX_AGE_DAYS", "1".to_owned());
        let err = load(&env).expect_err("a key that must be replaced before its successor may sign");
        assert!(err.to_string().contains("KEY_MAX_AGE_DAYS"), "{err}");
    }

    #[test]
    fn an_envelope_key_must_be_published_before_it_is_replaced() {
        let mut env = complete();
        env.insert("SIGNING_KEY_KIND", "envelope".to_owned());
        assert_eq!(load(&env).unwrap().signing_key_kind, KeyKind::Envelope, "daily keys, a 12-hour lead");
        env.insert("KEY_PUBLISH_LEAD_SECS", "86400".to_owned());
        let err = load(&env).expect_err("a key replaced before it may sign");
        assert!(err.to_string().contains("ENVELOPE_KEY_MAX_AGE_SECS"), "{err}");
        env.insert("SIGNING_KEY_KIND", "kms".to_owned());
        assert!(load(&env).is_ok(), "the envelope max age binds only deployments that make envelope keys");
    }

    #[test]
    fn the_revocation_poll_must_stay_well_inside_the_staleness_bound() {
        let mut env = complete();
        env.insert("REVOCATION_POLL_SECS", "20".to_owned());
        assert!(load(&env).is_ok(), "60 s of staleness covers three polls of 20 s");
        env.insert("REVOCATION_POLL_SECS", "21".to_owned());
        let err = load(&env).expect_err("a poll slower than a third of the bound");
        assert!(matches!(err, ConfigError::Inconsistent(_)));
        assert!(err.to_string().contains("REVOCATION_POLL_SECS") && err.to_string().contains("STALENESS"), "{err}");
    }

    #[test]
    fn the_token_leeway_must_be_below_the_token_lifetime() {
        let mut env = complete();
        env.insert("ACCESS_TOKEN_TTL_SECS", "60".to_owned());
        env.insert("TOKEN_LEEWAY_SECS", "60".to_owned());
        let err = load(&env).expect_err("leeway as long as the lifetime");
        assert!(err.to_string().contains("TOKEN_LEEWAY_SECS"), "{err}");
    }

    #[test]
    fn revocation_entries_outlive_every_token_they_cover_by_the_verifiers_leeway() {
        for (ttl, leeway) in [("900", "30"), ("300", "2"), ("60", "59")] {
            let mut env = complete();
            env.insert("ACCESS_TOKEN_TTL_SECS", ttl.to_owned());
            env.insert("TOKEN_LEEWAY_SECS", leeway.to_owned());
            let config = load(&env).unwrap();
            // A token issued just before the entry, by a clock a leeway ahead, is accepted
            // until issue + ttl + leeway: the entry must still be there.
            let last_accepted = config.access_token_ttl + config.token_leeway * 2;
            assert!(config.revocation_lifetime() >= last_accepted);
            assert!(config.revocation_grace() >= config.token_leeway);
            assert!(config.revocation_lookback() >= config.revocation_lifetime());
        }
    }
}
