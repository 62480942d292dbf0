//! The grants that issue an access token without a session of their own: client
//! credentials (RFC 6749 §4.4) and token exchange (RFC 8693), for a client the token
//! endpoint has authenticated and found allowed the grant. Neither issues a refresh token.
//!
//! Client credentials: `sub` = `client_id`, no `sid`, the client's scopes (narrowed on
//! request), one of its audiences. Token exchange: the subject token verified by the one
//! verifier (any audience this issuer serves) and found live, read strongly consistent
//! ([`TokenLiveness`]); the new token keeps the user (`sub`) and the session (`sid`), so
//! ending the session ends it too, names the caller in `act` (nested over the subject's),
//! is for an audience the caller may ask for, with at most the subject's scope that the
//! caller may have, and ends no later than the subject token. The decisions are in
//! [`crate::rules::grants`]; each refusal is audited and counted per client.
//!
//! Either grant asked for with a `DPoP` proof (RFC 9449 §5, "all access token requests
//! regardless of grant type") checks it as login and refresh do and binds the token to
//! its key (`cnf.jkt`, `token_type: DPoP`); a bad proof is `invalid_dpop_proof`.

use std::fmt;
use std::sync::Arc;

use crate::error::ApiError;
use crate::platform::audit::{self, GrantIssued, RequestMeta};
use crate::platform::clock::Clock;
use crate::platform::config::Config;
use crate::rules::clients::{ClientRecord, GrantType};
use crate::rules::grants::{check_token_types, exchange_actor, exchanged_scope, service_scope, Grant, GrantRefusal};
use crate::rules::keys::Signer;
use crate::rules::scope::Scope;
use crate::rules::token::{AccessOnlyGrant, AccessTokenIssuer, TokenResponse};
use crate::services::client_auth::ClientAuthenticator;
use crate::services::keys::KeyRing;
use crate::services::liveness::TokenLiveness;
use crate::services::token_dpop::{ProofRefusal, TokenProofs};
use crate::services::token_endpoint::{ClientCredentialsRequest, ExchangeRequest};

/// Issues service tokens and exchanged tokens.
pub struct GrantService {
    issuer: AccessTokenIssuer,
    /// The one verifier accepting any audience of this issuer (a subject token was issued
    /// for the API that passes it on, whichever that is), its keys kept by the ring.
    keys: KeyRing,
    liveness: TokenLiveness,
    /// The callers' DPoP proofs (RFC 9449 §5): a token asked for with one is bound to its key.
    proofs: TokenProofs,
    /// The deployment's audience: a client with no registered audiences gets it.
    default_audience: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for GrantService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantService")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .field("default_audience", &self.default_audience)
            .finish_non_exhaustive()
    }
}

impl GrantService {
    /// The service over the deployment's tables, signing with `signer` (the token
    /// endpoint's one signer, shared with its refresh grant). No I/O: the key set of the
    /// subject tokens' verifier is read by [`GrantService::warm_up`] or the first exchange.
    pub fn new(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
        clients: ClientAuthenticator,
    ) -> Self {
        let keys = KeyRing::for_any_audience(config, dynamodb.clone(), kms);
        Self {
            issuer: super::issuer_for(signer, config),
            keys,
            liveness: TokenLiveness::new(config, dynamodb.clone(), clients),
            proofs: TokenProofs::new(config, dynamodb),
            default_audience: config.audience.clone(),
            clock,
        }
    }

    /// Reads the key set now (at cold start), so the first exchange need not; a failure
    /// leaves it to the first exchange.
    pub async fn warm_up(&self) {
        self.keys.sync(self.clock.now()).await;
    }

    /// Client credentials for an authenticated `client` that may use the grant.
    pub async fn client_credentials(
        &self,
        client: &ClientRecord,
        request: ClientCredentialsRequest,
        meta: &RequestMeta,
    ) -> Result<TokenResponse, ApiError> {
        let refuse = |why: GrantRefusal| refused(Grant::ClientCredentials, why, client, meta);
        // The token endpoint checked this; a disabled client must never get here.
        if !client.allows(GrantType::ClientCredentials) {
            return Err(refuse(GrantRefusal::UnauthorizedClient));
        }
        let scope = service_scope(&client.scope(), request.scope.as_deref()).map_err(refuse)?.to_scope_string();
        let audience = client
            .audience(request.audience.as_deref(), &self.default_audience)
            .ok_or_else(|| refuse(GrantRefusal::Target))?;
        let now = self.clock.now();
        let proof = self.proofs.check(request.dpop.as_ref(), now).map_err(|r| refuse(proof_refused(r)))?;
        self.proofs.record(proof.as_ref(), now).await?.map_err(|r| refuse(proof_refused(r)))?;
        let grant = AccessOnlyGrant {
            subject: &client.client_id,
            client_id: &client.client_id,
            scope: &scope,
            audience: Some(audience),
            session_id: None,
            act: None,
            ttl: client_ttl(client),
            not_after: None,
            exchanged: false,
            bound_to: proof.as_ref().map(|p| p.jkt.as_str()),
        };
        let response = self.issuer.issue_access_only(&grant, now).await?;
        audit::grant_issued(
            Grant::ClientCredentials,
            GrantIssued {
                client_id: &client.client_id,
                user_id: None,
                family_id: None,
                audience,
                actors: "",
                source_ip: meta.source_ip.as_deref(),
            },
        );
        Ok(response)
    }

    /// Token exchange for an authenticated `client` that may use the grant.
    pub async fn token_exchange(
        &self,
        client: &ClientRecord,
        request: ExchangeRequest,
        meta: &RequestMeta,
    ) -> Result<TokenResponse, ApiError> {
        let refuse = |why: GrantRefusal| refused(Grant::TokenExchange, why, client, meta);
        if !client.allows(GrantType::TokenExchange) {
            return Err(refuse(GrantRefusal::UnauthorizedClient));
        }
        check_token_types(&request.subject_token_type, request.requested_token_type.as_deref()).map_err(refuse)?;
        let audience = client
            .audience(request.audience.as_deref(), &self.default_audience)
            .ok_or_else(|| refuse(GrantRefusal::Target))?;
        let now = self.clock.now();
        let proof = self.proofs.check(request.dpop.as_ref(), now).map_err(|r| refuse(proof_refused(r)))?;
        let subject = self
            .keys
            .fresh_verifier(now)
            .await?
            .verify(&request.subject_token, now)
            .map_err(|rejection| refuse(GrantRefusal::SubjectInvalid(rejection.class())))?;
        let act = exchange_actor(&subject, &client.client_id, now).map_err(refuse)?;
        let scope = exchanged_scope(
            &Scope::from_tokens(subject.scope.split(' ').filter(|t| !t.is_empty())),
            &client.scope(),
            request.scope.as_deref(),
        )
        .map_err(refuse)?
        .to_scope_string();
        // Last, after every check that needs no read: strongly consistent, so a token
        // revoked a moment ago (its jti, its session, its account, a client of its chain)
        // is refused now, not within the authorizer's lag.
        // The proof's single use is recorded beside that read: one round trip for both.
        let (live, recorded) = tokio::join!(self.liveness.is_live(&subject), self.proofs.record(proof.as_ref(), now));
        if !live? {
            return Err(refuse(GrantRefusal::SubjectRevoked));
        }
        recorded?.map_err(|r| refuse(proof_refused(r)))?;
        let actors: Vec<&str> = act.chain().map(|a| a.sub.as_str()).collect();
        let actors = actors.join(" ");
        let grant = AccessOnlyGrant {
            subject: &subject.sub,
            client_id: &client.client_id,
            scope: &scope,
            audience: Some(audience),
            session_id: subject.sid.as_deref(),
            act: Some(act),
            ttl: client_ttl(client),
            not_after: Some(subject.exp),
            exchanged: true,
            bound_to: proof.as_ref().map(|p| p.jkt.as_str()),
        };
        let response = self.issuer.issue_access_only(&grant, now).await?;
        audit::grant_issued(
            Grant::TokenExchange,
            GrantIssued {
                client_id: &client.client_id,
                user_id: Some(&subject.sub),
                family_id: subject.sid.as_deref(),
                audience,
                actors: &actors,
                source_ip: meta.source_ip.as_deref(),
            },
        );
        Ok(response)
    }
}

/// The client's registered token lifetime, if it has one.
fn client_ttl(client: &ClientRecord) -> Option<std::time::Duration> {
    client.token_ttl_secs.map(std::time::Duration::from_secs)
}

/// A refused `DPoP` proof, as a grant's refusal.
fn proof_refused(refusal: ProofRefusal) -> GrantRefusal {
    GrantRefusal::DpopProof { class: refusal.class(), description: refusal.description() }
}

/// Audits and counts a refusal, and says what the client is told.
fn refused(grant: Grant, why: GrantRefusal, client: &ClientRecord, meta: &RequestMeta) -> ApiError {
    audit::grant_refused(grant, why, &client.client_id, meta.source_ip.as_deref());
    why.to_api_error()
}
