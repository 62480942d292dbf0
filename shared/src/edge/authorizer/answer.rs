//! What the authorizer answers: a simple response (HTTP API payload 2.0) or an IAM policy,
//! and the context handed to the backend.

use serde::Serialize;

use crate::rules::routes::PolicyDocument;
use crate::rules::token::AccessClaims;

/// What the authorizer answers (serialised by the runtime): a simple response (HTTP API
/// payload 2.0) or an IAM policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `{"isAuthorized": .., "context": ..}`.
    Simple {
        /// Allow or deny.
        #[serde(rename = "isAuthorized")]
        is_authorized: bool,
        /// Claims handed to the backend.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<AuthContext>,
    },
    /// `{"principalId": .., "policyDocument": .., "context": ..}`.
    Policy {
        /// The user id (or `unauthorized`).
        #[serde(rename = "principalId")]
        principal_id: String,
        /// The IAM policy.
        #[serde(rename = "policyDocument")]
        policy_document: PolicyDocument,
        /// Claims handed to the backend.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<AuthContext>,
    },
}

/// The context API Gateway passes to the backend (strings only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthContext {
    /// Who the token is for: `user` (a session's token, or one exchanged for a user) or
    /// `service` (a client's own token, client credentials).
    pub principal_type: &'static str,
    /// User id; for a service, its `client_id`.
    pub sub: String,
    /// Granted scope.
    pub scope: String,
    /// Client.
    pub client_id: String,
    /// Session id; empty for a service.
    pub sid: String,
    /// Token id.
    pub jti: String,
    /// The audience the token was accepted for.
    pub aud: String,
    /// For an exchanged token, the clients acting for the user, latest first, separated by
    /// spaces (RFC 8693 `act`); empty otherwise.
    pub act: String,
}

impl From<&AccessClaims> for AuthContext {
    fn from(t: &AccessClaims) -> Self {
        Self {
            principal_type: if t.is_service() { "service" } else { "user" },
            sub: t.sub.clone(),
            scope: t.scope.clone(),
            client_id: t.client_id.clone(),
            sid: t.sid.clone().unwrap_or_default(),
            jti: t.jti.clone(),
            aud: t.aud.clone(),
            act: t
                .act
                .as_ref()
                .map(|act| act.chain().map(|a| a.sub.as_str()).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }
}
