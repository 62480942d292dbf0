//! Ending sessions: RFC 7009 token revocation, revoke-all, and the revocation that reuse
//! detection triggers.
//!
//! Ending a session is two writes: the family becomes `revoked` (no refresh ever again)
//! and a denylist entry goes into Revocations (`sid`, or a user's not-before), so access
//! tokens already out there die at the authorizer too. Entries live until the last token
//! they cover has expired.

use std::fmt;
use std::sync::Arc;

use crate::error::{ApiError, DependencyError};
use crate::platform::audit::{self, Session, SessionEvent};
use crate::platform::clock::Clock;
use crate::platform::config::{Config, ReuseScope};
use crate::rules::clients::ClientRecord;
use crate::rules::revoke::{
    bearer_account_holds, bearer_session, classify, cut_off, cut_off_after, revocation_right, revoke_all_subject,
    sid_entry_owed, RevocationRight, RevokeTarget,
};
use crate::rules::rotation::{issued_by, key_check, same_key, Issued};
use crate::rules::sessions::{is_live_session, session_cut_off};
use crate::rules::token::{AccessClaims, RefreshToken};
use crate::rules::username::Username;
use crate::services::account::Presented;
use crate::services::client_auth::{ClientAuthenticator, ClientCredentials};
use crate::services::keys::KeyRing;
use crate::services::token_dpop::{PresentedProof, ProofRefusal, TokenProofs};
use crate::store::{
    AccountChange, AccountCommit, AccountState, DynamoFamilies, DynamoRevocations, DynamoUsers, FamilyRecord,
    KeptThrough, Revocation, RevocationKind, UserRecord, UserWriteError,
};

/// How long ending a user's families may take before the rest is left to their owner's
/// cut-off: a rotation of a family of an ended epoch fails anyway, so finishing is only
/// tidiness, and the time stays bounded however many families there are.
const FAMILY_CLEAN_UP_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// How many families are revoked at once during a clean-up.
const FAMILY_CLEAN_UP_CONCURRENCY: usize = 8;

/// Revokes families and writes the matching denylist entries.
#[derive(Clone)]
pub struct Revoker {
    families: DynamoFamilies,
    users: DynamoUsers,
    revocations: DynamoRevocations,
    /// How long an entry written now must live ([`Config::revocation_lifetime`]).
    lifetime_secs: u64,
    /// How long past a token's `exp` its entry must live ([`Config::revocation_grace`]).
    grace_secs: u64,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Revoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revoker").field("lifetime_secs", &self.lifetime_secs).finish_non_exhaustive()
    }
}

/// How an account change decided on the account as read ended
/// ([`Revoker::change_account_as_read`]).
#[derive(Debug, Clone)]
pub enum ChangedAsRead {
    /// Committed.
    Done(AccountChanged),
    /// The account is no longer as read (another change committed first): nothing changed.
    AccountMoved,
    /// The session to keep ended (or is not a live session of the account): nothing
    /// changed.
    SessionEnded,
}

/// What an account change did.
#[derive(Debug, Clone)]
pub struct AccountChanged {
    /// The account as written.
    pub user: UserRecord,
    /// Families revoked by the clean-up (not necessarily all: the cut-off covers the rest).
    pub families_revoked: usize,
}

impl Revoker {
    /// Over the configured tables.
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            families: DynamoFamilies::new(dynamodb.clone(), &config.families_table, &config.users_table),
            users: DynamoUsers::new(dynamodb.clone(), &config.users_table),
            revocations: DynamoRevocations::new(dynamodb, &config.revocations_table)
                .with_standard_lifetime(config.revocation_lifetime().as_secs()),
            lifetime_secs: config.revocation_lifetime().as_secs(),
            grace_secs: config.revocation_grace().as_secs(),
            clock,
        }
    }

    /// A denylist entry, stamped now (just before it is written: the authorizer's overlap
    /// covers the time a write takes to land, not the time a request took before it).
    fn entry(&self, kind: RevocationKind, subject: &str, not_before: Option<u64>) -> Revocation {
        Revocation {
            kind,
            subject: subject.to_owned(),
            revoked_at_ms: self.clock.now_ms(),
            not_before,
            expires_at: self.clock.now() + self.lifetime_secs,
            except_sid: None,
        }
    }

    /// The family `family_id`, if there is one (read strongly consistent).
    pub async fn family(&self, family_id: &str) -> Result<Option<FamilyRecord>, DependencyError> {
        self.families.get(family_id).await
    }

    /// Revokes one family if `presented` is a token it issued (current or remembered) and
    /// denylists its `sid`. A forged token changes nothing. Returns whether it revoked.
    /// Safe to repeat after a failure: a logout that finds the family already revoked
    /// still writes the `sid` entry until the family records it as written
    /// ([`sid_entry_owed`]), so a failed denylist write does not leave the session's access
    /// tokens alive.
    pub async fn revoke_presented(
        &self,
        presented: &RefreshToken,
        reason: &str,
        now: u64,
    ) -> Result<bool, DependencyError> {
        let family_id = presented.family_id();
        let hash = presented.hash();
        let revoked_now = match self.families.revoke_or_read(&family_id, Some(&hash), reason, now).await? {
            Ok(_) => true,
            Err(was) if sid_entry_owed(was.as_ref(), &hash) => false,
            Err(_) => return Ok(false),
        };
        self.revocations.put(&[self.entry(RevocationKind::Sid, &family_id, None)]).await?;
        self.families.mark_sid_denylisted(&family_id).await?;
        Ok(revoked_now)
    }

    /// Cuts a client off: every token issued to it, or exchanged by it (`act`), before
    /// [`cut_off`]`(now)` is refused by the authorizer within its stated lag. The entry lives
    /// as long as the longest-lived of those tokens: `token_ttl_secs` (the client's own
    /// lifetime, if longer than the deployment's) plus the two leeways. Returns the cut-off.
    pub async fn cut_off_client(
        &self,
        client_id: &str,
        token_ttl_secs: Option<u64>,
        now: u64,
    ) -> Result<u64, DependencyError> {
        let not_before = cut_off(now);
        let mut entry = self.entry(RevocationKind::Client, client_id, Some(not_before));
        let own_lifetime = token_ttl_secs.map_or(0, |ttl| ttl + self.grace_secs);
        entry.expires_at = entry.expires_at.max(self.clock.now() + own_lifetime);
        self.revocations.put(&[entry]).await?;
        Ok(not_before)
    }

    /// Revokes one family (idempotent): its account already cut off its access tokens.
    pub async fn end_family(&self, family_id: &str, reason: &str, now: u64) -> Result<(), DependencyError> {
        self.families.revoke(family_id, None, reason, now).await.map(|_| ())
    }

    /// Applies an account change that every session must follow. First the cut-off entry,
    /// so live access tokens die at the authorizer within the stated lag (if it cannot be
    /// written, nothing has changed and the call can simply be repeated). Then the account
    /// write, the commit point: from it on, no login or rotation decided on the account as
    /// it was can succeed (both are conditioned on its version), and every token issued
    /// after it is at or after the cut-off. Then, if the change ends sessions, the user's
    /// trusted devices are forgotten and the families are revoked as far as the clean-up
    /// budget (3 s) allows.
    pub async fn change_account(
        &self,
        username: &Username,
        change: &AccountChange,
        reason: &str,
        now: u64,
    ) -> Result<AccountChanged, UserWriteError> {
        let read = self.users.get(username).await?.ok_or(UserWriteError::NotFound)?;
        let not_before = cut_off_after(now, read.not_before);
        self.revocations.put(&[self.entry(RevocationKind::User, &read.user_id, Some(not_before))]).await?;
        let user = self.users.change(username, change, not_before).await?;
        if change.ends_sessions() {
            // The devices that logged in before are strangers again (a disabled account
            // re-enabled later, or one whose sessions were ended, trusts none of them). A
            // failure leaves the change committed: repeating it finishes this.
            self.users.forget_devices(username, self.clock.now()).await?;
        }
        // Each family's `sid` entry too (a deleted account's before its erasure): a change
        // racing another one may have kept the other's cut-off (the account write keeps a
        // later or equal one), which a token issued right after it carries as its `iat`.
        let families_revoked =
            if change.ends_sessions() { self.end_families_of(&user.user_id, None, reason, now).await } else { 0 };
        Ok(AccountChanged { user, families_revoked })
    }

    /// Applies an account change its user asked for, decided on the account as read
    /// (`read`): the change commits only if the account is still at that version (and,
    /// with `verified_hash`, still has the password hash the caller's password was checked
    /// against), so of two concurrent changes exactly one commits. With `keep`, the
    /// caller's session (as read) survives a change that ends sessions: the cut-off entry
    /// spares its `sid`, and the family is carried into the new sessions epoch in the same
    /// transaction (refused if the session ended meanwhile), and so is the cut-off entry:
    /// it lands if and only if the change commits. Then, as [`Revoker::change_account`]
    /// does, the devices are forgotten and the other families revoked.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_account_as_read(
        &self,
        username: &Username,
        read: &UserRecord,
        change: &AccountChange,
        keep: Option<&FamilyRecord>,
        verified_hash: Option<&str>,
        reason: &str,
        now: u64,
    ) -> Result<ChangedAsRead, DependencyError> {
        let not_before = cut_off_after(now, read.not_before);
        let next = read.after(change, not_before);
        let kept = match keep {
            None => None,
            Some(family) if !is_live_session(family, read, now) => return Ok(ChangedAsRead::SessionEnded),
            Some(family) => {
                let state = AccountState {
                    scopes: family.scope().intersection(&next.scope()).tokens().map(str::to_owned).collect(),
                    user_version: next.version,
                    not_before: next.not_before,
                };
                let kept = KeptThrough { version: next.version, since: session_cut_off(family, read) };
                Some(self.families.keep_through(family, next.sessions_epoch, &state, kept, now)?)
            }
        };
        let profile = self.users.change_as_read(username, read, &next, verified_hash)?;
        // The cut-off entry in the same transaction: a change refused (another one
        // committed first) must not leave an entry that ends the sessions the committed
        // change kept.
        let mut entry = self.entry(RevocationKind::User, &read.user_id, Some(not_before));
        entry.except_sid = keep.map(|f| f.family_id.clone());
        let entry = self.revocations.put_part(&entry)?;
        match self.families.commit_account_change(profile, kept, vec![entry]).await? {
            AccountCommit::Done => {}
            AccountCommit::AccountMoved => return Ok(ChangedAsRead::AccountMoved),
            AccountCommit::SessionEnded => return Ok(ChangedAsRead::SessionEnded),
        }
        let mut families_revoked = 0;
        if change.ends_sessions() {
            // Committed: what follows is clean-up, so a failure is logged, not answered (the
            // user's change is made; a trusted device only eases the lockout).
            if let Err(e) = self.users.forget_devices(username, self.clock.now()).await {
                tracing::warn!(error = %e, "could not forget the devices after an account change");
            }
            let kept = keep.map(|f| f.family_id.as_str());
            families_revoked = self.end_families_of(&read.user_id, kept, reason, now).await;
        }
        Ok(ChangedAsRead::Done(AccountChanged { user: next, families_revoked }))
    }

    /// Erases a deleted account ([`AccountChange::Delete`] committed): every family of
    /// `user_id` (the `by_user` index) is deleted, then the Users partition of `username`
    /// ([`DynamoUsers::erase`]). What stays is keyed by the stable user id only (denylist
    /// entries, until their TTL). Safe to repeat; returns whether the profile is gone.
    ///
    /// A family written in the moment before the deletion committed may not be in the
    /// index yet (it is eventually consistent): it can never be used (its account is gone,
    /// and a new account under the username has another `user_id`) and goes at its TTL.
    pub async fn erase_account(&self, username: &Username, user_id: &str) -> Result<bool, UserWriteError> {
        use futures_util::StreamExt as _;
        let ids = self.families.family_ids_of_user(user_id).await?;
        futures_util::stream::iter(ids)
            .map(|id| async move { self.families.delete(&id).await })
            .buffer_unordered(FAMILY_CLEAN_UP_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, DependencyError>>()?;
        self.users.erase(username, user_id).await
    }

    /// Ends one session its user chose (`DELETE /auth/sessions/{sid}`): its `sid`
    /// denylisted first (its access tokens die within the authorizer's lag), then the
    /// family revoked; if the second write fails, repeating the call finishes it.
    pub async fn end_session(&self, family_id: &str, reason: &str, now: u64) -> Result<(), DependencyError> {
        self.revocations.put(&[self.entry(RevocationKind::Sid, family_id, None)]).await?;
        if self.families.revoke(family_id, None, reason, now).await?.is_some() {
            self.families.mark_sid_denylisted(family_id).await?;
        }
        Ok(())
    }

    /// Revokes a user's families and denylists their `sid`s, concurrently, for at most the
    /// clean-up budget; failures are logged, not fatal (the account's cut-off already ended
    /// these sessions).
    async fn end_families_of(&self, user_id: &str, except: Option<&str>, reason: &str, now: u64) -> usize {
        use futures_util::StreamExt as _;
        let revoked = std::sync::atomic::AtomicUsize::new(0);
        let clean_up = async {
            let ids = match self.families.family_ids_of_user(user_id).await {
                Ok(ids) => ids.into_iter().filter(|id| Some(id.as_str()) != except).collect::<Vec<_>>(),
                Err(e) => return tracing::warn!(error = %e, "could not list a user's families"),
            };
            // Each family revoked, and its `sid` denylisted (its tokens are under the cut-off
            // already; the entry says so per session too).
            let end_family = |id: String| async move {
                if self.families.revoke(&id, None, reason, now).await?.is_none() {
                    return Ok(false);
                }
                self.revocations.put(&[self.entry(RevocationKind::Sid, &id, None)]).await?;
                Ok::<bool, DependencyError>(true)
            };
            futures_util::stream::iter(ids)
                .map(end_family)
                .buffer_unordered(FAMILY_CLEAN_UP_CONCURRENCY)
                .for_each(|outcome| {
                    match outcome {
                        Ok(true) => {
                            revoked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "could not revoke a family; its cut-off covers it"),
                    }
                    std::future::ready(())
                })
                .await;
        };
        if tokio::time::timeout(FAMILY_CLEAN_UP_BUDGET, clean_up).await.is_err() {
            tracing::warn!("family clean-up stopped at its time budget; the cut-off covers the rest");
        }
        revoked.into_inner()
    }

    /// Reacts to a detected reuse in `family`: its `sid` is denylisted and, with
    /// [`ReuseScope::User`], every session of its owner ends (an account change). The
    /// reused family is revoked last, so if any step fails, presenting the stolen token
    /// again detects the reuse again and finishes the job.
    pub async fn revoke_for_reuse(
        &self,
        scope: ReuseScope,
        family: &FamilyRecord,
        now: u64,
    ) -> Result<(), DependencyError> {
        self.revocations.put(&[self.entry(RevocationKind::Sid, &family.family_id, None)]).await?;
        if scope == ReuseScope::User {
            if let Some(username) = family.user_key.as_deref().and_then(Username::normalise) {
                match self.change_account(&username, &AccountChange::EndSessions, "reuse_detected", now).await {
                    Ok(_) | Err(UserWriteError::NotFound | UserWriteError::AlreadyExists) => {}
                    Err(UserWriteError::Dependency(e)) => return Err(e),
                }
            }
        }
        self.families.revoke(&family.family_id, None, "reuse_detected", now).await?;
        Ok(())
    }

    /// Denylists one access token until it expires (and records it for
    /// [`Revoker::bearer_account`]).
    pub async fn revoke_access_token(&self, jti: &str, exp: u64) -> Result<(), DependencyError> {
        let mut entry = self.entry(RevocationKind::Jti, jti, None);
        entry.expires_at = exp + self.grace_secs;
        self.revocations.put(&[entry]).await
    }

    /// The account of a bearer token that is not revoked: its session alive, its `jti`
    /// not revoked, issued at or after its account's cut-off. `None` otherwise (a thief's
    /// revoked token must not end the victim's new sessions).
    pub async fn bearer_account(&self, claims: &AccessClaims) -> Result<Option<Username>, DependencyError> {
        // A service's own token has no session, so no account to end.
        let Some(sid) = claims.sid.as_deref() else { return Ok(None) };
        let (family, jti_revoked) =
            tokio::try_join!(self.families.get(sid), self.revocations.is_jti_revoked(&claims.jti))?;
        let Some(family) = family else { return Ok(None) };
        let Some(username) = bearer_session(claims, Some(&family), jti_revoked) else { return Ok(None) };
        let user = self.users.get(&username).await?;
        Ok(bearer_account_holds(claims, &family, user.as_ref()).then_some(username))
    }
}

/// A revocation request (RFC 7009 §2.1).
#[derive(Clone)]
pub struct RevokeRequest {
    /// The token to revoke.
    pub token: String,
    /// `access_token` or `refresh_token`; a hint only (RFC 7009 §2.1).
    pub token_type_hint: Option<String>,
    /// How the caller authenticates its client (RFC 6749 §2.3); `None` without a
    /// `client_id`: a caller naming no client.
    pub client: ClientCredentials,
    /// A `DPoP` proof: what a refresh token of a session bound to a key must come with.
    pub dpop: Option<PresentedProof>,
}

impl RevokeRequest {
    /// A request that names no client (the first-party app's logout), with no proof.
    pub fn anonymous(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            token_type_hint: None,
            client: ClientCredentials::None { client_id: None },
            dpop: None,
        }
    }
}

impl fmt::Debug for RevokeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeRequest")
            .field("token_type_hint", &self.token_type_hint)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// The revoke function's service.
pub struct RevocationService {
    revoker: Revoker,
    keys: KeyRing,
    /// Who is asking (RFC 7009 §2.1), and whose a token is.
    clients: ClientAuthenticator,
    /// The proofs a bound session's tokens must come with (RFC 9449).
    proofs: TokenProofs,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RevocationService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationService").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl RevocationService {
    /// Builds the service with the one verifier, its keys read now (so the first request
    /// need not) and again at most once per `KEY_SET_RELOAD_SECS`.
    pub async fn from_config(
        config: &Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = KeyRing::from_config(config, dynamodb.clone(), kms);
        keys.sync(clock.now()).await;
        let clients = ClientAuthenticator::from_config(config, dynamodb.clone());
        let proofs = TokenProofs::new(config, dynamodb.clone());
        Self::new(Revoker::new(config, dynamodb, clock.clone()), keys, clients, proofs, clock)
    }

    /// The service around a revoker, a key ring, a client registry and the proofs' record
    /// as they are (no I/O here).
    pub fn new(
        revoker: Revoker,
        keys: KeyRing,
        clients: ClientAuthenticator,
        proofs: TokenProofs,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { revoker, keys, clients, proofs, clock }
    }

    /// RFC 7009: revokes the token if it is one of ours and valid; answers the same for
    /// unknown, expired and malformed tokens (§2.2: "invalid tokens do not cause an error").
    /// A refresh token revokes its family and the family's access tokens (`sid`); an access
    /// token is denylisted by `jti`. A refresh token needs no key, so its logout works
    /// while the key set is stale; anything else waits for a verifier it can trust.
    ///
    /// §2.1: client credentials sent are checked first (wrong: `invalid_client`), and a
    /// token of a confidential client is revoked only by that client, authenticated
    /// ([`revocation_right`]); a public client's token by whoever holds it. A refresh
    /// token of a session bound to a DPoP key ends it only with a proof from that key, as
    /// it rotates only with one, and a bound access token is revoked only with one: a
    /// copied token without the key ends nothing (400 `invalid_dpop_proof`). A proof sent
    /// is checked and used once, whatever the token.
    pub async fn revoke(&self, request: RevokeRequest, source_ip: Option<&str>) -> Result<(), ApiError> {
        let now = self.clock.now();
        let proof = self.proofs.check(request.dpop.as_ref(), now)?;
        let caller = match &request.client {
            ClientCredentials::None { client_id: None } => None,
            credentials => Some(self.clients.authenticate(credentials, now).await?),
        };
        self.proofs.record(proof.as_ref(), now).await??;
        let target = match RefreshToken::parse(&request.token) {
            Some(refresh) => RevokeTarget::Session(refresh),
            None => classify(&request.token, self.keys.fresh_verifier(now).await?, now),
        };
        match target {
            RevokeTarget::Session(refresh) => {
                let Some(family) = self.revoker.family(&refresh.family_id()).await? else {
                    audit::session(SessionEvent::NothingToRevoke, Session::new(&refresh.family_id(), source_ip));
                    return Ok(());
                };
                self.may_revoke(caller.as_ref(), &family.client_id).await?;
                // A token the family issued, bound to a key: only with a proof of that key
                // (a forged one goes on to change nothing, as before).
                if issued_by(&family, &refresh.hash()) != Issued::Never {
                    let proof_key = proof.as_ref().map(|p| p.jkt.as_str());
                    key_check(&family, refresh.generation(), proof_key).map_err(ProofRefusal::from)?;
                }
                let revoked = self.revoker.revoke_presented(&refresh, "revoked_by_client", now).await?;
                let event = if revoked { SessionEvent::RefreshTokenRevoked } else { SessionEvent::NothingToRevoke };
                audit::session(event, Session::new(&refresh.family_id(), source_ip));
            }
            RevokeTarget::AccessToken(claims) => {
                self.may_revoke(caller.as_ref(), &claims.client_id).await?;
                // A token bound to a key, as a bound refresh token: only with its key's proof.
                if let Some(bound) = claims.bound_to() {
                    same_key(bound, proof.as_ref().map(|p| p.jkt.as_str())).map_err(ProofRefusal::from)?;
                }
                self.revoker.revoke_access_token(&claims.jti, claims.exp).await?;
                let session = Session::new(claims.sid.as_deref().unwrap_or("-"), source_ip)
                    .user(&claims.sub)
                    .client(&claims.client_id);
                audit::session(SessionEvent::AccessTokenRevoked, session);
            }
            RevokeTarget::Nothing => {}
        }
        Ok(())
    }

    /// Whether `caller` may revoke a token issued to `owner`, the registry read (strongly
    /// consistent) unless the caller is the owner.
    async fn may_revoke(&self, caller: Option<&ClientRecord>, owner: &str) -> Result<(), ApiError> {
        if caller.is_some_and(|c| c.client_id == owner) {
            return Ok(());
        }
        let owner = self.clients.client(owner).await?;
        match revocation_right(caller, owner.as_ref()) {
            RevocationRight::Allowed => Ok(()),
            RevocationRight::AuthenticationRequired => Err(ApiError::InvalidClient { basic: false }),
            RevocationRight::NotTheCallers => Err(ApiError::NotTheClientsToken),
        }
    }

    /// `POST /auth/revoke-all`: the bearer token's user loses every session. A token bound
    /// to a DPoP key counts only as `Authorization: DPoP` with a fresh proof of that key
    /// for this request (RFC 9449 §7.1), used once; a bearer token only as `Bearer`. So a
    /// copied bound token without its key ends nothing.
    pub async fn revoke_all(
        &self,
        presented: Presented<'_>,
        proof: Option<&PresentedProof>,
        source_ip: Option<&str>,
    ) -> Result<usize, ApiError> {
        match self.end_every_session(presented, proof, source_ip).await {
            // RFC 9449 §7.1: a refusal under the DPoP scheme challenges with it.
            Err(ApiError::InvalidToken) if presented.is_dpop() => Err(ApiError::InvalidDpopToken),
            outcome => outcome,
        }
    }

    async fn end_every_session(
        &self,
        presented: Presented<'_>,
        proof: Option<&PresentedProof>,
        source_ip: Option<&str>,
    ) -> Result<usize, ApiError> {
        let now = self.clock.now();
        let bearer = presented.token();
        let claims = revoke_all_subject(bearer, self.keys.fresh_verifier(now).await?, now)?;
        match (claims.bound_to(), presented.is_dpop()) {
            (None, false) => {}
            (Some(jkt), true) => {
                let checked = self.proofs.check_presenting(proof, now, bearer, jkt);
                let Ok(Some(proof)) = checked else { return Err(ApiError::InvalidToken) };
                if self.proofs.record(Some(&proof), now).await?.is_err() {
                    return Err(ApiError::InvalidToken);
                }
            }
            // A bound token as a bearer one, or a bearer token under the DPoP scheme.
            _ => return Err(ApiError::InvalidToken),
        }
        let Some(username) = self.revoker.bearer_account(&claims).await? else {
            audit::session(
                SessionEvent::RevokedBearer,
                Session::new(claims.sid.as_deref().unwrap_or("-"), source_ip).user(&claims.sub),
            );
            return Err(ApiError::InvalidToken);
        };
        let changed = match self.revoker.change_account(&username, &AccountChange::EndSessions, "revoke_all", now).await
        {
            Ok(changed) => changed,
            Err(UserWriteError::Dependency(e)) => return Err(e.into()),
            Err(UserWriteError::NotFound | UserWriteError::AlreadyExists) => return Err(ApiError::InvalidToken),
        };
        let revoked = changed.families_revoked;
        let session =
            Session::new(claims.sid.as_deref().unwrap_or("-"), source_ip).user(&claims.sub).client(&claims.client_id);
        audit::session(SessionEvent::AllSessionsRevoked, session);
        Ok(revoked)
    }
}
