//! Configuration: read once at cold start from the environment.
//!
//! AWS endpoints, region and credentials are not here: the SDK reads the standard
//! variables (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_KMS`, ...).

use std::time::Duration;

use crate::error::ConfigError;

/// Everything a function needs to know about its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `USERS_TABLE` (required): the Users table.
    pub users_table: String,
    /// `FAMILIES_TABLE` (required): the refresh-token Families table.
    pub families_table: String,
    /// `REVOCATIONS_TABLE` (optional for login; default empty): the Revocations table.
    pub revocations_table: String,
    /// `SIGNING_KEY_ID` (required): id, ARN or alias of the KMS signing key (ECC_NIST_P256).
    pub signing_key_id: String,
    /// `TOKEN_ISSUER` (required): the `iss` claim.
    pub issuer: String,
    /// `TOKEN_AUDIENCE` (required): the `aud` claim.
    pub audience: String,
    /// `CLIENT_ID` (default `first-party`): the `client_id` claim of tokens issued by login.
    pub client_id: String,
    /// `ACCESS_TOKEN_TTL_SECS` (default 900 = 15 minutes).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS` (default 2 592 000 = 30 days): a family's absolute lifetime.
    pub refresh_token_ttl: Duration,
    /// `REFRESH_IDLE_TTL_SECS` (default 604 800 = 7 days): a family dies after this long unused.
    pub refresh_idle_ttl: Duration,
    /// `LOGIN_MAX_FAILURES` (default 5): failed logins per username before 429.
    pub login_max_failures: u32,
    /// `LOGIN_FAILURE_WINDOW_SECS` (default 900 = 15 minutes): the failure-counting window.
    pub login_failure_window: Duration,
    /// `REFRESH_LEEWAY_SECS` (default 30; 0 disables): how long after a rotation the
    /// previous token still gets the same successor (exactly-once retry).
    pub refresh_leeway: Duration,
    /// `REUSE_REVOKES` (`user` or `family`, default `user`): what a detected refresh-token
    /// reuse revokes.
    pub reuse_revokes: ReuseScope,
}

/// What a detected refresh-token reuse revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReuseScope {
    /// Only the family the reused token belongs to.
    Family,
    /// Every family of that user.
    User,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| match lookup(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConfigError::Missing(name)),
        };
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match lookup(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
                    _ => Err(ConfigError::Invalid { name, reason: "a whole number of seconds above 0" }),
                },
            }
        };
        let login_max_failures = match lookup("LOGIN_MAX_FAILURES") {
            None => 5,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(ConfigError::Invalid { name: "LOGIN_MAX_FAILURES", reason: "a whole number above 0" }),
            },
        };
        let refresh_leeway = match lookup("REFRESH_LEEWAY_SECS") {
            None => Duration::from_secs(30),
            Some(v) => Duration::from_secs(v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                name: "REFRESH_LEEWAY_SECS",
                reason: "a whole number of seconds (0 disables)",
            })?),
        };
        let reuse_revokes = match lookup("REUSE_REVOKES").as_deref().map(str::trim) {
            None | Some("user") => ReuseScope::User,
            Some("family") => ReuseScope::Family,
            Some(_) => return Err(ConfigError::Invalid { name: "REUSE_REVOKES", reason: "`user` or `family`" }),
        };
        Ok(Self {
            users_table: required("USERS_TABLE")?,
            families_table: required("FAMILIES_TABLE")?,
            revocations_table: lookup("REVOCATIONS_TABLE").unwrap_or_default(),
            signing_key_id: required("SIGNING_KEY_ID")?,
            issuer: required("TOKEN_ISSUER")?,
            audience: required("TOKEN_AUDIENCE")?,
            client_id: lookup("CLIENT_ID").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "first-party".to_owned()),
            access_token_ttl: secs("ACCESS_TOKEN_TTL_SECS", 900)?,
            refresh_token_ttl: secs("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            refresh_idle_ttl: secs("REFRESH_IDLE_TTL_SECS", 7 * 24 * 3600)?,
            login_max_failures,
            login_failure_window: secs("LOGIN_FAILURE_WINDOW_SECS", 900)?,
            refresh_leeway,
            reuse_revokes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn complete() -> HashMap<&'static str, String> {
        [
            ("USERS_TABLE", "users"),
            ("FAMILIES_TABLE", "families"),
            ("SIGNING_KEY_ID", "alias/signing"),
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

    #[test]
    fn applies_documented_defaults() {
        let config = load(&complete()).expect("complete config loads");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(2_592_000));
        assert_eq!(config.refresh_idle_ttl, Duration::from_secs(604_800));
        assert_eq!(config.login_max_failures, 5);
        assert_eq!(config.login_failure_window, Duration::from_secs(900));
        assert_eq!(config.client_id, "first-party");
        assert_eq!(config.refresh_leeway, Duration::from_secs(30));
        assert_eq!(config.reuse_revokes, ReuseScope::User);
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
    fn names_each_missing_variable() {
        for name in ["USERS_TABLE", "FAMILIES_TABLE", "SIGNING_KEY_ID", "TOKEN_ISSUER", "TOKEN_AUDIENCE"] {
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
        let mut env = complete();
        env.insert("ACCESS_TOKEN_TTL_SECS", "15m".to_owned());
        let err = load(&env).expect_err("15m is not seconds");
        assert!(err.to_string().contains("ACCESS_TOKEN_TTL_SECS"), "{err}");
    }
}
