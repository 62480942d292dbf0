//! Whether a verified access token is still good right now, read strongly consistent from
//! the tables rather than from an authorizer's polled denylist: for token exchange (a
//! revoked subject token is refused at once) and introspection (RFC 7662: "active" is
//! immediate, not within the authorizer's lag).
//!
//! A token is live when its `jti` is not denylisted, its session (if it has one) is
//! active and its account still holds it (the account is the token's subject, active,
//! and its cut-off is not after the token's `iat`), and every client of its chain (the one
//! it was issued to, and each `act`) is registered and active. One round trip for the
//! denylist, the session and the clients at once, a second for the account.

use crate::error::DependencyError;
use crate::platform::config::Config;
use crate::rules::revoke::{bearer_account_holds, bearer_session};
use crate::rules::token::AccessClaims;
use crate::services::client_auth::ClientAuthenticator;
use crate::store::{DynamoFamilies, DynamoRevocations, DynamoUsers};

/// Reads whether access tokens are live.
#[derive(Debug, Clone)]
pub struct TokenLiveness {
    families: DynamoFamilies,
    users: DynamoUsers,
    revocations: DynamoRevocations,
    clients: ClientAuthenticator,
}

impl TokenLiveness {
    /// Over the configured tables.
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client, clients: ClientAuthenticator) -> Self {
        Self {
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table, &config.users_table),
            users: DynamoUsers::new(dynamodb.clone(), &config.users_table),
            revocations: DynamoRevocations::new(dynamodb, &config.revocations_table),
            clients,
        }
    }

    /// Whether `claims` (verified: signature, issuer, expiry) are still live.
    pub async fn is_live(&self, claims: &AccessClaims) -> Result<bool, DependencyError> {
        let chain: Vec<&str> = std::iter::once(claims.client_id.as_str())
            .chain(claims.act.iter().flat_map(|a| a.chain().map(|a| a.sub.as_str())))
            .collect();
        let clients = futures_util::future::try_join_all(chain.iter().map(|id| self.clients.client(id)));
        let family = async {
            match claims.sid.as_deref() {
                Some(sid) => self.families.get(sid).await.map(Some),
                None => Ok(None),
            }
        };
        let (jti_revoked, family, clients) =
            tokio::try_join!(self.revocations.is_jti_revoked(&claims.jti), family, clients)?;
        if jti_revoked || !clients.iter().all(|c| c.as_ref().is_some_and(|c| c.is_active())) {
            return Ok(false);
        }
        let Some(family) = family else {
            // No session: a service's own token, whose client was just checked.
            return Ok(claims.is_service());
        };
        let Some(family) = family else { return Ok(false) };
        let Some(username) = bearer_session(claims, Some(&family), false) else { return Ok(false) };
        let user = self.users.get(&username).await?;
        Ok(bearer_account_holds(claims, &family, user.as_ref()))
    }
}
