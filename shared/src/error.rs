//! Errors: one enum per layer. [`ApiError`] is what a client can see; its variants are
//! named for the RFC 6749 §5.2 error they become, and [`crate::edge::http`] maps them to
//! responses in one place. Causes are logged there, never sent.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;

/// Configuration could not be read at cold start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required environment variable is unset or blank.
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    /// A variable is set but does not parse.
    #[error("environment variable {name} must be {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// A variable parses but its content cannot be used (e.g. a JWKS with a foreign key).
    #[error("environment variable {name}: {reason}")]
    Unusable {
        /// The variable.
        name: &'static str,
        /// Why not.
        reason: String,
    },
    /// Two settings contradict each other.
    #[error("{0}")]
    Inconsistent(String),
}

/// A function could not start: its configuration, or a dependency it needs at cold start
/// (the signing key's public half, the trusted keys).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// KMS or DynamoDB at cold start.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// What went wrong with a request, as the client will be told.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: malformed body, wrong content type, missing or empty field.
    /// The message is safe to show (it never echoes input).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// 405: the route only accepts POST (token endpoints) or GET (published documents).
    #[error("method not allowed")]
    MethodNotAllowed(Allowed),
    /// 413: the body is over the limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 401 `invalid_grant`: bad credentials, disabled user, dead refresh token. One body
    /// for all of them, so a caller cannot tell which.
    #[error("invalid grant")]
    InvalidGrant,
    /// 400 `invalid_dpop_proof` (RFC 9449 §5, §7): at login or the token endpoint, a DPoP
    /// proof that is malformed, for another request, stale, replayed or from another key
    /// than the session's, more than one proof, none for a bound session, or one while DPoP
    /// is off. The description is a fixed text that never echoes the proof.
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
    /// 400 `unsupported_grant_type`: a `grant_type` the token endpoint does not know.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// 401 `invalid_client` (RFC 6749 §5.2): unknown or disabled client, wrong or expired
    /// secret, a bad assertion, a confidential client that did not authenticate. One body
    /// for all; `WWW-Authenticate: Basic` when the client tried HTTP Basic.
    #[error("invalid client")]
    InvalidClient {
        /// The client authenticated with HTTP Basic.
        basic: bool,
    },
    /// 400 `unauthorized_client`: the client may not use this grant.
    #[error("unauthorized client")]
    UnauthorizedClient,
    /// 400 `unauthorized_client` at revocation (RFC 7009 §2.1): the token was issued to
    /// another confidential client than the one that authenticated.
    #[error("not the client's token")]
    NotTheClientsToken,
    /// 400 `invalid_target` (RFC 8693 §2.2.2, RFC 8707): an audience or resource the
    /// client may not ask tokens for.
    #[error("invalid target")]
    InvalidTarget,
    /// 401 `invalid_grant`: the password an account change asked for is not the
    /// account's (`POST /auth/password`, `DELETE /auth/account`). The caller is known, so
    /// unlike login's the body says which credential was wrong.
    #[error("wrong password")]
    WrongPassword,
    /// 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`: an
    /// invalid, expired or revoked access token.
    #[error("invalid bearer token")]
    InvalidToken,
    /// 401 `invalid_token` with `WWW-Authenticate: DPoP error="invalid_token"`: the same,
    /// for a token presented under the DPoP scheme (RFC 9449 §7.1).
    #[error("invalid DPoP-bound token")]
    InvalidDpopToken,
    /// 401 with a bare `WWW-Authenticate: Bearer` challenge: no access token at all, or
    /// one under a scheme we do not take (RFC 6750 §3.1: no error code then).
    #[error("no access token")]
    NoToken,
    /// 400 `invalid_request`: more than one `Authorization` header (RFC 6750 §3.1).
    #[error("several access tokens")]
    SeveralTokens,
    /// 404: no such path.
    #[error("not found")]
    NotFound,
    /// 400 `invalid_scope`: the requested scope is malformed or not granted to the user.
    #[error("invalid scope")]
    InvalidScope,
    /// 429: too many failed logins for this username, or too many requests from this
    /// source address; retry after the given time.
    #[error("too many attempts")]
    Throttled {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// 503: DynamoDB or KMS failed, timed out or throttled. Nothing was issued.
    #[error("dependency unavailable: {0}")]
    Unavailable(#[from] DependencyError),
}

/// The one method a route accepts (405 `Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Token, revocation and session endpoints.
    Post,
    /// The JWKS and the metadata.
    Get,
    /// `DELETE /auth/account` and `DELETE /auth/sessions/{sid}`.
    Delete,
    /// `/auth/sessions`: read them, or end every other.
    GetOrDelete,
}

/// A failure of a dependency (DynamoDB, KMS). Logged, never shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    /// A DynamoDB call failed.
    #[error("dynamodb {operation}: {message}")]
    DynamoDb {
        /// Which call.
        operation: &'static str,
        /// The SDK's error, rendered with its source chain.
        message: String,
    },
    /// A KMS call failed, or answered something unusable.
    #[error("kms {operation}: {message}")]
    Kms {
        /// Which call.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// DynamoDB or KMS refused the call for the request rate (over a quota or a partition's
    /// throughput): the dependency works, it is busy. Its own variant, because the answer
    /// differs: a longer, spread `Retry-After` (`edge::http`), and a KMS key set is not
    /// re-read for it (a throttled `kms:Sign` is not a revoked key).
    #[error("{service} {operation} throttled: {message}")]
    Throttled {
        /// `dynamodb` or `kms`.
        service: &'static str,
        /// Which call.
        operation: &'static str,
        /// The SDK's error, rendered with its source chain.
        message: String,
    },
    /// A stored item could not be read back (corrupt or foreign data).
    #[error("stored item unreadable: {0}")]
    Corrupt(String),
    /// A blocking task (password hashing) could not complete.
    #[error("internal task failed: {0}")]
    Internal(String),
}

impl DependencyError {
    /// A DynamoDB failure, with the full source chain of the SDK error; [`Self::Throttled`]
    /// if its code is one the SDK itself treats as throttling.
    pub fn dynamodb(operation: &'static str, err: impl std::error::Error + ProvideErrorMetadata) -> Self {
        if is_throttling(err.code()) {
            return Self::Throttled { service: "dynamodb", operation, message: error_chain(&err) };
        }
        Self::DynamoDb { operation, message: error_chain(&err) }
    }

    /// The failure's class for metrics: `dynamodb`, `kms`, `dynamodb_throttled`,
    /// `kms_throttled`, `corrupt`, `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DynamoDb { .. } => "dynamodb",
            Self::Kms { .. } => "kms",
            Self::Throttled { service: "kms", .. } => "kms_throttled",
            Self::Throttled { .. } => "dynamodb_throttled",
            Self::Corrupt(_) => "corrupt",
            Self::Internal(_) => "internal",
        }
    }

    /// A KMS failure, with the full source chain of the SDK error; [`Self::Throttled`] if
    /// its code is one the SDK itself treats as throttling.
    pub fn kms(operation: &'static str, err: impl std::error::Error + ProvideErrorMetadata) -> Self {
        if is_throttling(err.code()) {
            return Self::Throttled { service: "kms", operation, message: error_chain(&err) };
        }
        Self::Kms { operation, message: error_chain(&err) }
    }

    /// Whether the dependency refused for the request rate.
    pub fn is_throttling(&self) -> bool {
        matches!(self, Self::Throttled { .. })
    }
}

/// Whether an AWS error code means "slow down": the SDK's own list (the codes its standard
/// retry strategy classifies as throttling: KMS `ThrottlingException`, DynamoDB
/// `ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`...).
pub fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|code| aws_runtime::retries::classifiers::THROTTLING_ERRORS.contains(&code))
}

/// "outer: inner: root", because SDK errors put the useful part in `source()`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_kms::operation::sign::SignError;

    use crate::error::DependencyError;

    fn dynamodb_error(code: &str) -> DependencyError {
        DependencyError::dynamodb("GetItem", GetItemError::generic(ErrorMetadata::builder().code(code).build()))
    }

    fn kms_error(code: &str) -> DependencyError {
        let meta = aws_sdk_kms::error::ErrorMetadata::builder().code(code).message("Rate exceeded").build();
        DependencyError::kms("Sign", SignError::generic(meta))
    }

    #[test]
    fn the_throttling_codes_of_kms_and_dynamodb_are_throttling_and_nothing_else_is() {
        assert!(kms_error("ThrottlingException").is_throttling());
        assert_eq!(kms_error("ThrottlingException").kind(), "kms_throttled");
        for code in ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"] {
            let error = dynamodb_error(code);
            assert!(error.is_throttling(), "{code}");
            assert_eq!(error.kind(), "dynamodb_throttled", "{code}");
        }
        for code in ["KMSInvalidStateException", "DisabledException", "AccessDeniedException"] {
            assert!(!kms_error(code).is_throttling(), "{code}");
            assert_eq!(kms_error(code).kind(), "kms", "{code}");
        }
        for code in ["ConditionalCheckFailedException", "ResourceNotFoundException", "InternalServerError"] {
            assert!(!dynamodb_error(code).is_throttling(), "{code}");
        }
        assert!(!DependencyError::Internal("x".into()).is_throttling());
    }
}
