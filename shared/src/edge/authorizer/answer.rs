//! What the authorizer answers: a simple response (HTTP API payload 2.0) or an IAM policy,
//! and the context handed to the backend.

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::rules::routes::PolicyDocument;
use crate::rules::token::{AccessClaims, Actor};

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

/// The context API Gateway passes to the backend (strings only), written from the verified
/// claims as they are held (no copy of them per request):
///
/// - `principal_type`: `user` (a session's token, or one exchanged for a user) or `service`
///   (a client's own token, client credentials);
/// - `sub`: the user id; for a service, its `client_id`;
/// - `scope`, `client_id`, `jti`;
/// - `sid`: the session id; empty for a service;
/// - `aud`: the audience the token was accepted for;
/// - `act`: for an exchanged token, the clients acting for the user, latest first,
///   separated by spaces (RFC 8693 `act`); empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext(Arc<AccessClaims>);

impl From<Arc<AccessClaims>> for AuthContext {
    fn from(claims: Arc<AccessClaims>) -> Self {
        Self(claims)
    }
}

impl Serialize for AuthContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = &*self.0;
        let mut context = serializer.serialize_struct("AuthContext", 8)?;
        context.serialize_field("principal_type", if t.is_service() { "service" } else { "user" })?;
        context.serialize_field("sub", &t.sub)?;
        context.serialize_field("scope", &t.scope)?;
        context.serialize_field("client_id", &t.client_id)?;
        context.serialize_field("sid", t.sid.as_deref().unwrap_or_default())?;
        context.serialize_field("jti", &t.jti)?;
        context.serialize_field("aud", &t.aud)?;
        context.serialize_field("act", &ActorChain(t.act.as_ref()))?;
        context.end()
    }
}

/// An `act` chain as one string: the actors' ids, latest first, separated by spaces.
struct ActorChain<'a>(Option<&'a Actor>);

impl Serialize for ActorChain<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for ActorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, actor) in self.0.into_iter().flat_map(Actor::chain).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&actor.sub)?;
        }
        Ok(())
    }
}
