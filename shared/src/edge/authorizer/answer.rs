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
    /// User id.
    pub sub: String,
    /// Granted scope.
    pub scope: String,
    /// Client.
    pub client_id: String,
    /// Session id.
    pub sid: String,
    /// Token id.
    pub jti: String,
}

impl From<&AccessClaims> for AuthContext {
    fn from(t: &AccessClaims) -> Self {
        Self {
            sub: t.sub.clone(),
            scope: t.scope.clone(),
            client_id: t.client_id.clone(),
            sid: t.sid.clone(),
            jti: t.jti.clone(),
        }
    }
}
