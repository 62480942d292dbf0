//! The rules of the grants that issue an access token without a session of their own:
//! client credentials (RFC 6749 §4.4) and token exchange (RFC 8693). Which scope a token
//! gets, which subject tokens may be exchanged, and the actor chain of an exchanged token.
//!
//! Every refusal of a subject token (not ours, a bad signature, expired, revoked, a
//! service's own token, a chain too long) is one answer, `invalid_request` with one
//! description, as RFC 8693 §2.2.2 requires ("if either the subject_token or actor_token
//! are invalid for any reason ... the invalid_request error code MUST be used"); the
//! reason goes only to the audit line and the metric.

use crate::error::ApiError;
use crate::rules::scope::Scope;
use crate::rules::token::{AccessClaims, Actor, ACCESS_TOKEN_TYPE_URI};
use crate::rules::verify::MAX_ACTORS;

/// The description of every refused subject token: the same whatever the reason.
pub const SUBJECT_TOKEN_REFUSED: &str = "subject_token is not an active access token that may be exchanged";

/// The grants of this module, as their metrics and audit lines name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 8693.
    TokenExchange,
}

impl Grant {
    /// The `Operation` of its metrics and the `event` of its audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "token_exchange",
        }
    }
}

/// Why a grant issued nothing (the request was understood; a dependency failure is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantRefusal {
    /// The client may not use the grant (the token endpoint checks this first).
    UnauthorizedClient,
    /// `scope` is not RFC 6749 §3.3 syntax.
    MalformedScope,
    /// `scope` asks for more than may be granted.
    ScopeNotAllowed,
    /// Nothing would be granted: the subject and the client share no scope.
    NoCommonScope,
    /// `audience`/`resource` is not one the client may ask for.
    Target,
    /// `subject_token_type` is not an access token's.
    SubjectTokenType,
    /// `requested_token_type` is not an access token's.
    RequestedTokenType,
    /// The subject token did not verify (the verifier's class: `bad_signature`,
    /// `expired`...).
    SubjectInvalid(&'static str),
    /// The subject token verified but is revoked: its `jti`, its session, its account, or a
    /// client of its chain.
    SubjectRevoked,
    /// The subject token is a service's own (client credentials): it has no user to act for.
    SubjectIsService,
    /// The subject token has [`MAX_ACTORS`] actors already: one more would make a token
    /// the verifier refuses.
    ActorChainTooLong,
    /// The request's `DPoP` proof was refused (RFC 9449 §5: checked whatever the grant):
    /// its class, and what the client is told.
    DpopProof {
        /// The audit/metric class (`dpop_replayed`...).
        class: &'static str,
        /// The `error_description`.
        description: &'static str,
    },
}

impl GrantRefusal {
    /// The `Outcome` of the refusal metric and the audit line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnauthorizedClient => "unauthorized_client",
            Self::MalformedScope => "malformed_scope",
            Self::ScopeNotAllowed => "scope_not_allowed",
            Self::NoCommonScope => "no_common_scope",
            Self::Target => "invalid_target",
            Self::SubjectTokenType => "subject_token_type",
            Self::RequestedTokenType => "requested_token_type",
            Self::SubjectInvalid(class) => class,
            Self::SubjectRevoked => "subject_revoked",
            Self::SubjectIsService => "subject_is_service",
            Self::ActorChainTooLong => "actor_chain_too_long",
            Self::DpopProof { class, .. } => class,
        }
    }

    /// What the client is told.
    pub fn to_api_error(self) -> ApiError {
        match self {
            Self::UnauthorizedClient => ApiError::UnauthorizedClient,
            Self::MalformedScope | Self::ScopeNotAllowed | Self::NoCommonScope => ApiError::InvalidScope,
            Self::Target => ApiError::InvalidTarget,
            Self::SubjectTokenType => {
                ApiError::InvalidRequest("subject_token_type must be urn:ietf:params:oauth:token-type:access_token")
            }
            Self::RequestedTokenType => {
                ApiError::InvalidRequest("requested_token_type must be urn:ietf:params:oauth:token-type:access_token")
            }
            Self::SubjectInvalid(_) | Self::SubjectRevoked | Self::SubjectIsService | Self::ActorChainTooLong => {
                ApiError::InvalidRequest(SUBJECT_TOKEN_REFUSED)
            }
            Self::DpopProof { description, .. } => ApiError::InvalidDpopProof(description),
        }
    }
}

/// `requested` parsed, if any.
fn requested_scope(requested: Option<&str>) -> Result<Option<Scope>, GrantRefusal> {
    requested.map(|raw| Scope::parse(raw).map_err(|_| GrantRefusal::MalformedScope)).transpose()
}

/// A service token's scope: the client's, or the narrower one it asked for.
pub fn service_scope(client: &Scope, requested: Option<&str>) -> Result<Scope, GrantRefusal> {
    match requested_scope(requested)? {
        None => Ok(client.clone()),
        Some(asked) if asked.is_subset_of(client) => Ok(asked),
        Some(_) => Err(GrantRefusal::ScopeNotAllowed),
    }
}

/// An exchanged token's scope: at most what the subject token carries and the client may
/// be given; without a request, all of that (never nothing: a token that permits nothing
/// is refused rather than issued).
pub fn exchanged_scope(subject: &Scope, client: &Scope, requested: Option<&str>) -> Result<Scope, GrantRefusal> {
    let allowed = subject.intersection(client);
    match requested_scope(requested)? {
        None if allowed.is_empty() => Err(GrantRefusal::NoCommonScope),
        None => Ok(allowed),
        Some(asked) if asked.is_subset_of(&allowed) => Ok(asked),
        Some(_) => Err(GrantRefusal::ScopeNotAllowed),
    }
}

/// RFC 8693 §2.1: the subject token must be an access token, and the token asked for (if
/// the client says) an access token too: nothing else is issued here.
pub fn check_token_types(subject_token_type: &str, requested_token_type: Option<&str>) -> Result<(), GrantRefusal> {
    if subject_token_type != ACCESS_TOKEN_TYPE_URI {
        return Err(GrantRefusal::SubjectTokenType);
    }
    if requested_token_type.is_some_and(|t| t != ACCESS_TOKEN_TYPE_URI) {
        return Err(GrantRefusal::RequestedTokenType);
    }
    Ok(())
}

/// Whether verified `subject` claims may be exchanged at `now` by `client_id`, and the
/// actor chain of the new token: the calling client, acting for whoever acted before
/// (RFC 8693 §4.1, nested). A service's own token has no user to act for; a token the
/// verifier let through within its clock leeway but already past `exp` would give a token
/// that is expired when issued; a chain at [`MAX_ACTORS`] cannot grow.
pub fn exchange_actor(subject: &AccessClaims, client_id: &str, now: u64) -> Result<Actor, GrantRefusal> {
    if subject.is_service() {
        return Err(GrantRefusal::SubjectIsService);
    }
    if subject.exp <= now {
        return Err(GrantRefusal::SubjectInvalid("expired"));
    }
    let before = subject.act.as_ref().map_or(0, |a| a.chain().count());
    if before >= MAX_ACTORS {
        return Err(GrantRefusal::ActorChainTooLong);
    }
    Ok(Actor { sub: client_id.to_owned(), act: subject.act.clone().map(Box::new) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scope(raw: &str) -> Scope {
        Scope::parse(raw).unwrap()
    }

    fn user_token(act: Option<Actor>) -> AccessClaims {
        AccessClaims {
            iss: "https://auth.test".into(),
            sub: "user-1".into(),
            aud: "https://api.a.test".into(),
            exp: 2_000,
            iat: 1_000,
            jti: "j".into(),
            client_id: "first-party".into(),
            scope: "read write".into(),
            sid: Some("family-1".into()),
            cnf: None,
            act,
        }
    }

    fn chain_of(depth: usize) -> Option<Actor> {
        (0..depth).fold(None, |inner, i| Some(Actor { sub: format!("svc-{i}"), act: inner.map(Box::new) }))
    }

    #[test]
    fn a_service_gets_its_own_scope_or_a_narrower_one_never_a_wider_or_a_malformed_one() {
        let client = scope("read write");
        assert_eq!(service_scope(&client, None), Ok(scope("read write")));
        assert_eq!(service_scope(&client, Some("read")), Ok(scope("read")));
        assert_eq!(service_scope(&client, Some("read admin")), Err(GrantRefusal::ScopeNotAllowed));
        assert_eq!(service_scope(&client, Some("read  write")), Err(GrantRefusal::MalformedScope));
        assert_eq!(service_scope(&client, Some("")), Err(GrantRefusal::MalformedScope));
        assert_eq!(service_scope(&Scope::default(), None), Ok(Scope::default()), "a client with no scopes");
    }

    #[test]
    fn an_exchange_gets_at_most_the_subjects_scope_that_the_client_may_have() {
        let subject = scope("read write profile");
        let client = scope("read write admin");
        assert_eq!(exchanged_scope(&subject, &client, None), Ok(scope("read write")), "the intersection");
        assert_eq!(exchanged_scope(&subject, &client, Some("write")), Ok(scope("write")));
        assert_eq!(
            exchanged_scope(&subject, &client, Some("admin")),
            Err(GrantRefusal::ScopeNotAllowed),
            "the client's, not the subject's"
        );
        assert_eq!(
            exchanged_scope(&subject, &client, Some("profile")),
            Err(GrantRefusal::ScopeNotAllowed),
            "the subject's, not the client's"
        );
        assert_eq!(exchanged_scope(&subject, &client, Some("re\"ad")), Err(GrantRefusal::MalformedScope));
        assert_eq!(exchanged_scope(&scope("profile"), &client, None), Err(GrantRefusal::NoCommonScope));
    }

    #[test]
    fn only_access_tokens_are_exchanged_and_issued() {
        assert_eq!(check_token_types(ACCESS_TOKEN_TYPE_URI, None), Ok(()));
        assert_eq!(check_token_types(ACCESS_TOKEN_TYPE_URI, Some(ACCESS_TOKEN_TYPE_URI)), Ok(()));
        assert_eq!(
            check_token_types("urn:ietf:params:oauth:token-type:refresh_token", None),
            Err(GrantRefusal::SubjectTokenType)
        );
        assert_eq!(
            check_token_types(ACCESS_TOKEN_TYPE_URI, Some("urn:ietf:params:oauth:token-type:id_token")),
            Err(GrantRefusal::RequestedTokenType)
        );
    }

    #[test]
    fn the_calling_client_acts_for_the_user_and_a_second_exchange_nests_the_first() {
        let first = exchange_actor(&user_token(None), "svc-a", 1_500).unwrap();
        assert_eq!(first, Actor { sub: "svc-a".into(), act: None });
        let second = exchange_actor(&user_token(Some(first.clone())), "svc-b", 1_500).unwrap();
        assert_eq!(second, Actor { sub: "svc-b".into(), act: Some(Box::new(first)) });
        assert_eq!(second.chain().map(|a| a.sub.as_str()).collect::<Vec<_>>(), ["svc-b", "svc-a"]);
    }

    #[test]
    fn a_service_token_an_expired_one_and_a_full_chain_are_not_exchanged() {
        let mut service = user_token(None);
        service.sid = None;
        service.sub = service.client_id.clone();
        assert_eq!(exchange_actor(&service, "svc-a", 1_500), Err(GrantRefusal::SubjectIsService));
        assert_eq!(
            exchange_actor(&user_token(None), "svc-a", 2_000),
            Err(GrantRefusal::SubjectInvalid("expired")),
            "expired at now, even if within the verifier's leeway"
        );
        assert!(exchange_actor(&user_token(chain_of(MAX_ACTORS - 1)), "svc-x", 1_500).is_ok());
        assert_eq!(
            exchange_actor(&user_token(chain_of(MAX_ACTORS)), "svc-x", 1_500),
            Err(GrantRefusal::ActorChainTooLong)
        );
    }

    #[test]
    fn every_refused_subject_token_gets_the_same_answer() {
        let answers: Vec<String> = [
            GrantRefusal::SubjectInvalid("bad_signature"),
            GrantRefusal::SubjectInvalid("expired"),
            GrantRefusal::SubjectRevoked,
            GrantRefusal::SubjectIsService,
            GrantRefusal::ActorChainTooLong,
        ]
        .into_iter()
        .map(|r| format!("{:?}", r.to_api_error()))
        .collect();
        assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
        assert!(matches!(GrantRefusal::SubjectRevoked.to_api_error(), ApiError::InvalidRequest(SUBJECT_TOKEN_REFUSED)));
        assert!(matches!(GrantRefusal::Target.to_api_error(), ApiError::InvalidTarget));
        assert!(matches!(GrantRefusal::NoCommonScope.to_api_error(), ApiError::InvalidScope));
    }
}
