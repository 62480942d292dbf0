//! What the authorizer answers: a simple response (HTTP API payload 2.0) or an IAM policy,
//! and the context handed to the backend.

use serde::Serialize;

use crate::token::AccessClaims;

/// How HTTP API payload 2.0 events are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStyle {
    /// `{"isAuthorized": .., "context": ..}` (the route's own decision).
    Simple,
    /// An IAM policy document, as for REST APIs and payload 1.0.
    Iam,
}

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

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// Allow and deny statements.
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Always `execute-api:Invoke`.
    #[serde(rename = "Action")]
    pub action: &'static str,
    /// `Allow` or `Deny`.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// execute-api ARNs (patterns).
    #[serde(rename = "Resource")]
    pub resource: Vec<String>,
}

impl PolicyDocument {
    /// A policy of these statements.
    pub(super) fn of(statement: Vec<Statement>) -> Self {
        Self { version: "2012-10-17", statement }
    }

    /// Deny every route: the answer to a request that is not authorized.
    pub(super) fn deny_all() -> Self {
        Self::of(vec![Statement::invoke("Deny", vec!["*".to_owned()])])
    }
}

impl Statement {
    /// `execute-api:Invoke` with `effect` on `resource`.
    pub(super) fn invoke(effect: &'static str, resource: Vec<String>) -> Self {
        Self { action: "execute-api:Invoke", effect, resource }
    }
}

impl From<AccessClaims> for AuthContext {
    fn from(t: AccessClaims) -> Self {
        Self { sub: t.sub, scope: t.scope, client_id: t.client_id, sid: t.sid, jti: t.jti }
    }
}
