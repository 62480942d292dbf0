//! `POST /auth/refresh`: rotate the refresh token, issue a new access token.
//!
//! A refresh reads its family, asks [`crate::rules::rotation::next_step`] what to do with
//! it, reads the owner's account (strongly consistent) beside signing the access token, and
//! follows the account ([`crate::rules::rotation::follow_account`]: a disabled account or
//! ended sessions end the family; new scopes narrow it, in the same rotation, and the token
//! is signed again for it), and only then rotates the family in one conditional write of the family alone: the
//! presented token is current and the family alive and as judged (`docs/architecture.md`
//! counts the calls). The account is not part of that write: the token's `iat` is taken
//! before the account is read, so an account change that commits after the read has a
//! cut-off above it ([`crate::rules::revoke::cut_off`]) and ends the token at every
//! verifier, and the rotated family at its next refresh. (A transaction with a condition
//! on the account cost three more write units per refresh: docs/decisions.md.) Signing
//! first means a signature KMS refuses (throttled, failing) writes nothing: the presented
//! token stays current and rotates once KMS answers again, however long that takes. A
//! refused rotation is classified by [`crate::rules::rotation::classify`]: retry within the
//! leeway (same successor, one counted answer of at most
//! [`crate::rules::rotation::MAX_RETRY_ANSWERS`]), reuse (revoke), or nothing.
//!
//! Where from ([`crate::rules::session_context`]): every rotation writes the network and
//! user-agent family the refresh came from, in its own write. A refresh from another one
//! than the session's last use is written as an audit line and counted
//! (`SessionContextChanges`) once the rotation committed, or, with `ON_CONTEXT_CHANGE=end`,
//! ends the session as a logout does and issues nothing. A retry answer writes and signals
//! nothing.
//!
//! DPoP (RFC 9449 §5): a proof is checked before anything is read and recorded beside the
//! family's read. A bound family is asked for its key ([`crate::rules::rotation::key_check`])
//! before the presented token is judged, each time it is read; without it the refresh is
//! refused with nothing changed and no reuse counted. A valid proof on an unbound family
//! binds it in the rotation's own write; the retry answer of a bound family asks for its key.
//!
//! Clients (RFC 6749 §6: "the refresh token was issued to the authenticated client"): a
//! family rotates only for the client it was issued to, the one the token endpoint
//! authenticated ([`crate::services::token_endpoint`]). Another client's request is
//! `invalid_grant` as soon as the family is read, before the token is judged: no reuse is
//! detected, nothing is revoked or written, the family is untouched. (Its DPoP proof, if
//! any, was recorded beside the read, as every admitted proof is: spent, as RFC 9449 §11.1
//! wants a proof to be anyway.)

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::error::{ApiError, DependencyError, StartError};
use crate::platform::audit::{self, RequestMeta, Session, SessionEvent};
use crate::platform::clock::Clock;
use crate::platform::config::{Config, ReuseScope};
use crate::platform::retry;
use crate::rules::keys::Signer;
use crate::rules::limits::LimitedAction;
use crate::rules::rotation::{
    classify, follow_account, key_check, next_step, retry_key_check, seal_successor, AccountVerdict, RefreshStep,
    Refusal, MAX_RETRY_ANSWERS,
};
use crate::rules::scope::Scope;
use crate::rules::session_context::{context_change, OnContextChange};
use crate::rules::token::{AccessGrant, AccessTokenIssuer, RefreshToken, TokenResponse};
use crate::rules::username::Username;
use crate::services::keys::sealing::SealingSecrets;
use crate::services::limits::SourceLimiter;
use crate::services::revoke::Revoker;
use crate::services::token_dpop::{PresentedProof, ProofRefusal, TokenProofs};
use crate::store::DynamoKeys;
use crate::store::{AccountState, DynamoFamilies, DynamoUsers, FamilyRecord, RotateOutcome, Rotation, UserRecord};

/// A refresh request (RFC 6749 §6), already parsed.
#[derive(Clone)]
pub struct RefreshRequest {
    /// The presented refresh token.
    pub refresh_token: String,
    /// A narrower scope for the new access token (never wider than the login's).
    pub scope: Option<String>,
    /// The `DPoP` proof, if the client sent one: required by a bound session, and binds an
    /// unbound one at its rotation.
    pub dpop: Option<PresentedProof>,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest").field("scope", &self.scope).finish_non_exhaustive()
    }
}

/// Rotates refresh tokens. Built once per cold start.
pub struct RefreshService {
    families: DynamoFamilies,
    users: DynamoUsers,
    revoker: Revoker,
    issuer: AccessTokenIssuer,
    sealing: SealingSecrets,
    clock: Arc<dyn Clock>,
    leeway_secs: u64,
    idle_secs: u64,
    reuse_revokes: ReuseScope,
    on_context_change: OnContextChange,
    limiter: SourceLimiter,
    proofs: TokenProofs,
}

impl fmt::Debug for RefreshService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshService")
            .field("issuer", &self.issuer)
            .field("leeway_secs", &self.leeway_secs)
            .field("reuse_revokes", &self.reuse_revokes)
            .field("on_context_change", &self.on_context_change)
            .finish_non_exhaustive()
    }
}

impl RefreshService {
    /// Builds the service from configuration and SDK clients, signing with the key set's
    /// current key ([`crate::services::keys::KeySetSigner`]).
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
    ) -> Result<Self, StartError> {
        let (clock, signer) = super::cold_start_signer(config, &dynamodb, &kms).await;
        let service = Self::new(config, dynamodb, kms, signer, clock);
        service.warm_up().await;
        Ok(service)
    }

    /// Decrypts the sealing secret now (at cold start), so the first request need not; if
    /// this fails, the first request tries again.
    pub async fn warm_up(&self) {
        if let Err(e) = self.sealing.get().await {
            tracing::warn!(error = %e, "no sealing secret at start-up");
        }
    }

    /// Builds the service around an existing signer and clock; `kms` decrypts the sealing
    /// secret of successors.
    pub fn new(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sealing: SealingSecrets::new(DynamoKeys::new(dynamodb.clone(), &config.keys_table), kms),
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table, &config.users_table),
            users: DynamoUsers::new(dynamodb.clone(), &config.users_table),
            limiter: SourceLimiter::new(config, dynamodb.clone(), LimitedAction::Refresh, clock.clone()),
            proofs: TokenProofs::new(config, dynamodb.clone()),
            revoker: Revoker::new(config, dynamodb, clock.clone()),
            issuer: super::issuer_for(signer, config),
            clock,
            leeway_secs: config.refresh_leeway.as_secs(),
            idle_secs: config.refresh_idle_ttl.as_secs(),
            reuse_revokes: config.reuse_revokes,
            on_context_change: config.on_context_change,
        }
    }

    /// Exchanges a refresh token for a new access token and a new refresh token, for
    /// `client_id`, a client already authenticated: a family issued to another client is
    /// `invalid_grant`, untouched.
    pub async fn refresh(
        &self,
        client_id: &str,
        request: RefreshRequest,
        meta: &RequestMeta,
    ) -> Result<TokenResponse, ApiError> {
        self.refresh_for(async { Ok(client_id.to_owned()) }, request, meta).await
    }

    /// A request refused on its own terms (a malformed token or scope, a bad proof): counted
    /// by the per-source limit, its client still authenticated first (`invalid_client`
    /// before anything about the token), nothing read.
    async fn refused_early(
        &self,
        client: impl Future<Output = Result<String, ApiError>>,
        meta: &RequestMeta,
        error: ApiError,
    ) -> Result<TokenResponse, ApiError> {
        let (admitted, client) = tokio::join!(self.limiter.admit(meta), client);
        admitted?;
        client?;
        Err(error)
    }

    /// [`RefreshService::refresh`] for the client `client` authenticates (the token
    /// endpoint's: a registry read, an assertion's record), awaited beside the family's
    /// read so it adds no round trip. Its refusal (`invalid_client`, `unauthorized_client`)
    /// comes before anything about the token is told or written; a DPoP proof recorded
    /// beside it is spent, as a refused request's always is.
    pub async fn refresh_for(
        &self,
        client: impl Future<Output = Result<String, ApiError>>,
        request: RefreshRequest,
        meta: &RequestMeta,
    ) -> Result<TokenResponse, ApiError> {
        let ip = meta.source_ip.as_deref();
        // Per source address, at once with the family's read (which changes nothing): a
        // refused request goes no further (no write, no signature) and an admitted one
        // waits one round trip for both. A request refused on its own terms (a malformed
        // token or scope) is counted too, and reads nothing.
        let (presented, required) = match (RefreshToken::parse(&request.refresh_token), request.scope.as_deref()) {
            (None, _) => {
                let refused = self.refused_early(client, meta, ApiError::InvalidGrant).await;
                audit::session(SessionEvent::MalformedToken, Session::new("-", ip));
                return refused;
            }
            (Some(presented), None) => (presented, Scope::default()),
            (Some(presented), Some(raw)) => match Scope::parse(raw) {
                Ok(required) => (presented, required),
                Err(_) => return self.refused_early(client, meta, ApiError::InvalidScope).await,
            },
        };
        let family_id = presented.family_id();
        // The DPoP proof, without I/O: a bad one is counted and refused, reading nothing.
        let now = self.clock.now();
        let proof = match self.proofs.check(request.dpop.as_ref(), now) {
            Ok(proof) => proof,
            Err(refusal) => return self.refused_early(client, meta, proof_refused(refusal, &family_id, ip)).await,
        };
        // Its use is recorded, and the client authenticated, beside the family's read: one
        // round trip for the four.
        let (admitted, client, read, recorded) = tokio::join!(
            self.limiter.admit(meta),
            client,
            self.families.get(&family_id),
            self.proofs.record(proof.as_ref(), now)
        );
        admitted?;
        let client_id = client?;
        let client_id = client_id.as_str();
        let read = read?;
        // Another client's family: refused before anything is judged or written.
        if let Some(family) = read.as_ref().filter(|f| f.client_id != client_id) {
            let session = Session::new(&family_id, ip).user(&family.user_id).client(client_id);
            audit::session(SessionEvent::WrongClient, session);
            return Err(ApiError::InvalidGrant);
        }
        if let Err(refusal) = recorded? {
            return Err(proof_refused(refusal, &family_id, ip));
        }
        let proof_key = proof.as_ref().map(|p| p.jkt.as_str());
        let required_scopes: Vec<String> = required.tokens().map(str::to_owned).collect();
        let successor = presented.successor().ok_or(ApiError::InvalidGrant)?;
        let server = self.sealing.get().await?;
        let sealed = if self.leeway_secs > 0 { seal_successor(server, &presented, &successor) } else { None };
        let (presented_hash, successor_hash) = (presented.hash(), successor.hash());
        // Where this refresh comes from, coarsely: written with the rotation, and compared
        // with where the session was last used.
        let seen = meta.session_context();

        let mut family = read;
        // The owner's account, read (strongly consistent) after `now` was taken: the new
        // access token's `iat` is `now` or the cut-off of the account as read, so an account
        // change that commits after this read has a cut-off above it (`cut_off`: the
        // change's time + 2 s) and ends the token wherever it is verified, and the refresh
        // token at its next use (which reads the account again). The rotation itself is a
        // write of the family alone. Read again when a refused rotation finds that the
        // family followed the account meanwhile.
        let mut account = None;
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            // A bound family, as it now reads, asks for its key before the token is judged:
            // without it nothing changes, and nothing counts as reuse.
            if let Some(Err(rejection)) = family.as_ref().map(|f| key_check(f, presented.generation(), proof_key)) {
                return Err(proof_refused(rejection.into(), &family_id, ip));
            }
            let current = match (next_step(family.as_ref(), &presented, &required, now), family.take()) {
                (RefreshStep::Rotate, Some(current)) => current,
                (RefreshStep::Refused, Some(current)) => {
                    return self.refused(&presented, current, &required, proof_key, now, ip).await;
                }
                (RefreshStep::NoAccount, Some(current)) => {
                    audit::session(SessionEvent::NoAccount, Session::new(&family_id, ip).user(&current.user_id));
                    return Err(ApiError::InvalidGrant);
                }
                (RefreshStep::Unknown, _) | (_, None) => {
                    audit::session(SessionEvent::UnknownToken, Session::new(&family_id, ip));
                    return Err(ApiError::InvalidGrant);
                }
            };
            let change = context_change(&current, &seen);
            if let (Some(change), OnContextChange::End) = (&change, self.on_context_change) {
                // Ended as a logout ends it (revoked, its `sid` denylisted), nothing issued.
                self.revoker.revoke_presented(&presented, "context_changed", now).await?;
                let session = Session::new(&family_id, ip).user(&current.user_id).client(&current.client_id);
                audit::context_changed(true, change, session);
                return Err(ApiError::InvalidGrant);
            }
            // The account is read beside a signature made for the family as judged (with a
            // KMS-held key the read then costs no round trip of its own); that signature is
            // used only if the account reads as the family already follows it.
            let (user, signed) = match account.take() {
                Some(user) => (user, None),
                None => {
                    let (user, signed) = tokio::join!(
                        self.account_of(&current),
                        self.issue(&current, &required, &successor, proof_key, now)
                    );
                    (user?, Some(signed))
                }
            };
            let judged_version = current.user_version;
            let Some((current, following)) = self.following(current, user.as_ref(), now, ip).await? else {
                return Err(ApiError::InvalidGrant);
            };
            // The narrowed scope may no longer grant what was asked.
            if following.is_some() && next_step(Some(&current), &presented, &required, now) != RefreshStep::Rotate {
                return self.refused(&presented, current, &required, proof_key, now, ip).await;
            }
            let rotation = Rotation {
                family_id: &family_id,
                presented_hash: &presented_hash,
                presented_generation: presented.generation(),
                successor_hash: &successor_hash,
                sealed_successor: sealed.as_deref(),
                required_scopes: &required_scopes,
                now,
                idle_secs: self.idle_secs,
                judged_version,
                follow: following.as_ref(),
                proof_key,
                network: seen.network.as_deref(),
                user_agent: seen.user_agent.as_deref(),
            };
            // Signed before the rotation is written (thrown away unless it commits): if KMS
            // refuses, nothing is written and the presented token is still current. Were the
            // two at once, a rotation committed beside a refused signature would leave the
            // client with a token whose retry expires with the leeway and then counts as reuse.
            // Bound to the proof's key: the family's own, or the one this rotation binds it to.
            // Signed again for a family that follows the account now (new scopes, cut-off).
            let tokens = match (signed, &following) {
                (Some(signed), None) => signed?,
                _ => self.issue(&current, &required, &successor, proof_key, now).await?,
            };
            match self.families.rotate(&rotation).await? {
                RotateOutcome::Rotated => {
                    let session = Session::new(&family_id, ip).user(&current.user_id).client(&current.client_id);
                    audit::session(SessionEvent::Rotated, session);
                    // Recorded only now that the rotation committed.
                    if let Some(change) = &change {
                        audit::context_changed(false, change, session);
                    }
                    return Ok(tokens);
                }
                // Judged again on the family as it now is; the account is read again only
                // if the family followed it meanwhile.
                RotateOutcome::Refused(old) => {
                    if old.as_ref().is_none_or(|f| f.user_version == judged_version) {
                        account = Some(user);
                    }
                    family = old.map(|f| *f);
                }
            }
        }
        Err(DependencyError::Internal("the family kept changing under the rotation".into()).into())
    }

    /// The access token a family issues now, for `required` scopes or all of its own, at
    /// or after the account's cut-off, bound to the DPoP key `bound_to` if any, with the
    /// refresh token that goes with it.
    async fn issue(
        &self,
        family: &FamilyRecord,
        required: &Scope,
        refresh_token: &RefreshToken,
        bound_to: Option<&str>,
        now: u64,
    ) -> Result<TokenResponse, DependencyError> {
        // RFC 6749 §6: the narrowed scope if one was asked for, else the one granted at login.
        let scope = if required.is_empty() { family.scope_string() } else { required.to_scope_string() };
        let grant = AccessGrant {
            subject: &family.user_id,
            client_id: &family.client_id,
            scope: &scope,
            session_id: &family.family_id,
            bound_to,
        };
        self.issuer.issue(&grant, refresh_token, now.max(family.not_before)).await
    }

    /// The owner's account (strongly consistent), or `None` if the family names none.
    async fn account_of(&self, family: &FamilyRecord) -> Result<Option<UserRecord>, DependencyError> {
        match family.user_key.as_deref().and_then(Username::normalise) {
            Some(key) => self.users.get(&key).await,
            None => Ok(None),
        }
    }

    /// The family as its account `user` (as read) says it must now be: as it is, or
    /// following the account's new version (narrowed scopes, the new cut-off; with that
    /// state, for the rotation to write), or `None` when the account ended it (no account,
    /// another one, disabled, its sessions ended): then the family is revoked too,
    /// idempotently, and audited.
    async fn following(
        &self,
        mut family: FamilyRecord,
        user: Option<&UserRecord>,
        now: u64,
        ip: Option<&str>,
    ) -> Result<Option<(FamilyRecord, Option<AccountState>)>, ApiError> {
        match follow_account(&family, user) {
            AccountVerdict::Dead => {
                audit::session(SessionEvent::AccountEnded, Session::new(&family.family_id, ip).user(&family.user_id));
                self.revoker.end_family(&family.family_id, "account_changed", now).await?;
                Ok(None)
            }
            AccountVerdict::Unchanged => Ok(Some((family, None))),
            AccountVerdict::Follow(state) => {
                family.follow(&state);
                Ok(Some((family, Some(state))))
            }
        }
    }

    /// A token that cannot rotate this family as it is: what does it mean? A retry is
    /// answered only once its answer is counted on the family ([`MAX_RETRY_ANSWERS`]); if
    /// the family moved meanwhile, the token is judged again on the family as it now is.
    async fn refused(
        &self,
        presented: &RefreshToken,
        mut family: FamilyRecord,
        required: &Scope,
        proof_key: Option<&str>,
        now: u64,
        ip: Option<&str>,
    ) -> Result<TokenResponse, ApiError> {
        let (family_id, user_id) = (family.family_id.clone(), family.user_id.clone());
        let known = Session::new(&family_id, ip).user(&user_id);
        let server = self.sealing.get().await?;
        for attempt in 0..retry::ATTEMPTS {
            retry::backoff(attempt).await;
            match classify(server, presented, Some(&family), required, now, self.leeway_secs) {
                Refusal::Retry(same_successor) => {
                    // The answer is the family's current token: bound, if the family is,
                    // whichever token asked for it (one from before the binding too).
                    if let Err(rejection) = retry_key_check(&family, proof_key) {
                        return Err(proof_refused(rejection.into(), &family_id, ip));
                    }
                    // No rotation, so the account is checked by reading it.
                    let user = self.account_of(&family).await?;
                    let Some((followed, _)) = self.following(family.clone(), user.as_ref(), now, ip).await? else {
                        return Err(ApiError::InvalidGrant);
                    };
                    if !required.is_subset_of(&followed.scope()) {
                        return Err(ApiError::InvalidScope);
                    }
                    // Signed before the answer is counted: a signature KMS refuses spends none
                    // of the bounded retry answers.
                    let tokens = self.issue(&followed, required, &same_successor, followed.jkt.as_deref(), now).await?;
                    match self.families.count_retry(&family, MAX_RETRY_ANSWERS).await? {
                        Ok(()) => {}
                        Err(Some(now_is)) => {
                            family = now_is;
                            if let Err(rejection) = key_check(&family, presented.generation(), proof_key) {
                                return Err(proof_refused(rejection.into(), &family_id, ip));
                            }
                            continue;
                        }
                        Err(None) => {
                            audit::session(SessionEvent::UnknownToken, Session::new(&family_id, ip));
                            return Err(ApiError::InvalidGrant);
                        }
                    }
                    let session = Session::new(&family_id, ip).user(&followed.user_id).client(&followed.client_id);
                    audit::session(SessionEvent::Retried, session);
                    return Ok(tokens);
                }
                Refusal::RetriesExhausted => {
                    audit::session(SessionEvent::RetriesExhausted, known);
                    return Err(ApiError::InvalidGrant);
                }
                Refusal::ScopeNotGranted => {
                    audit::session(SessionEvent::ScopeNotGranted, known);
                    return Err(ApiError::InvalidScope);
                }
                Refusal::Unknown => {
                    audit::session(SessionEvent::UnknownToken, Session::new(&family_id, ip));
                    return Err(ApiError::InvalidGrant);
                }
                Refusal::Dead => {
                    audit::session(SessionEvent::DeadFamily, known);
                    return Err(ApiError::InvalidGrant);
                }
                Refusal::Reuse => {
                    audit::session(SessionEvent::ReuseDetected, known);
                    self.revoker.revoke_for_reuse(self.reuse_revokes, &family, now).await?;
                    return Err(ApiError::InvalidGrant);
                }
            }
        }
        Err(DependencyError::Internal("the family kept changing under the retry".into()).into())
    }
}

/// A refresh refused for its DPoP proof: audited with the proof's class, nothing changed;
/// 400 `invalid_dpop_proof`.
fn proof_refused(refusal: ProofRefusal, family_id: &str, ip: Option<&str>) -> ApiError {
    audit::session(SessionEvent::ProofRefused(refusal.class()), Session::new(family_id, ip));
    refusal.into()
}
