//! The revocation rules, without I/O: what an RFC 7009 request targets ([`classify`]),
//! whose sessions revoke-all ends ([`revoke_all_subject`], [`bearer_session`],
//! [`bearer_account_holds`]), the cut-off of an account change ([`cut_off`],
//! [`cut_off_after`]), whether a
//! repeated logout still owes its session's denylist entry ([`sid_entry_owed`]), and who
//! may revoke a client's token ([`revocation_right`]).

use crate::error::ApiError;
use crate::rules::clients::{ClientRecord, ClientType};
use crate::rules::records::{FamilyRecord, FamilyStatus, UserRecord};
use crate::rules::rotation::{issued_by, Issued};
use crate::rules::sessions::session_cut_off;
use crate::rules::token::{AccessClaims, RefreshToken};
use crate::rules::username::Username;
use crate::rules::verify::Verifier;

/// How far ahead of an account change's time its cut-off lies, seconds ([`cut_off`]);
/// tokens issued after the change carry an `iat` up to this far ahead, so the clock
/// leeway must allow at least this.
pub const CUT_OFF_MARGIN_SECS: u64 = 2;

/// What the token of an RFC 7009 request is, decided without I/O. A refresh token is
/// recognised by its form (its family decides later whether it is genuine); an access
/// token must pass the one verifier, so nothing is revoked on unverified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A refresh token of our form: its family (session) is the target.
    Session(RefreshToken),
    /// A valid access token: its `jti` is the target.
    AccessToken(AccessClaims),
    /// Anything else: invalid, expired, foreign or garbage. RFC 7009 §2.2: answered like
    /// a success, nothing changes.
    Nothing,
}

/// Classifies a presented token. The `token_type_hint` is not needed (RFC 7009 §2.1 lets
/// a server ignore it): the two kinds cannot be mistaken for each other.
pub fn classify(token: &str, verifier: &Verifier, now: u64) -> RevokeTarget {
    if let Some(refresh) = RefreshToken::parse(token) {
        return RevokeTarget::Session(refresh);
    }
    match verifier.verify(token, now) {
        Ok(claims) => RevokeTarget::AccessToken(claims),
        Err(_) => RevokeTarget::Nothing,
    }
}

/// Whose sessions revoke-all ends: the subject of a valid bearer token in the user's own
/// hands, else 401. A token exchanged for a service (`act`) is in that service's hands,
/// and a service's own token has no user: neither may end the user's sessions.
pub fn revoke_all_subject(bearer: &str, verifier: &Verifier, now: u64) -> Result<AccessClaims, ApiError> {
    let claims = verifier.verify(bearer, now).map_err(|_| ApiError::InvalidToken)?;
    let own = claims.act.is_none() && !claims.is_service();
    own.then_some(claims).ok_or(ApiError::InvalidToken)
}

/// The cut-off of an account change at `now`: tokens issued before it are dead. `iat` is
/// in whole seconds, so a token issued earlier in this second must die too (+1), and the
/// hosts' clocks may disagree within a second (+1). Tokens issued after the change carry
/// `iat` at or after it, up to this many seconds ahead: well inside any verifier's
/// leeway (the configuration keeps `TOKEN_LEEWAY_SECS` at least this).
pub fn cut_off(now: u64) -> u64 {
    now + CUT_OFF_MARGIN_SECS
}

/// The cut-off of an account change at `now` on an account whose cut-off is `previous`:
/// [`cut_off`], and at least a second past `previous`. Tokens issued right after the
/// earlier change carry its cut-off as `iat` (so that they are valid), so a second change
/// within the same second must cut off later still to end them. Each such change moves the
/// cut-off one more second ahead of now, well inside the verifiers' leeway for any sane
/// rate of changes to one account.
pub fn cut_off_after(now: u64, previous: u64) -> u64 {
    cut_off(now).max(previous.saturating_add(1))
}

/// Whether a logout that found its family already revoked (`family`, as it was) must
/// still write the session's `sid` entry: the family is revoked, the entry is not recorded
/// as written (a logout whose denylist write failed left it owed), and the presented token
/// is one the family issued (a forged token with a real family id writes nothing).
pub fn sid_entry_owed(family: Option<&FamilyRecord>, presented_hash: &str) -> bool {
    family.is_some_and(|f| {
        f.status == FamilyStatus::Revoked && !f.sid_denylisted && issued_by(f, presented_hash) != Issued::Never
    })
}

/// Revoke-all's first check of a verified bearer, on what its session and the denylist
/// say: the session is alive and belongs to the token's subject, and the token's `jti` is
/// not revoked. The account to check next ([`bearer_account_holds`]), or `None` (a
/// thief's revoked token must not end the victim's new sessions).
pub fn bearer_session(claims: &AccessClaims, family: Option<&FamilyRecord>, jti_revoked: bool) -> Option<Username> {
    let family = family.filter(|f| f.status == FamilyStatus::Active && f.user_id == claims.sub)?;
    let username = family.user_key.as_deref().and_then(Username::normalise)?;
    (!jti_revoked).then_some(username)
}

/// Revoke-all's second check: the account is still the token's subject's, and the token
/// was issued at or after the cut-off its session is held to (the account's, or an earlier
/// one for a session the account's latest change kept: [`session_cut_off`]).
pub fn bearer_account_holds(claims: &AccessClaims, family: &FamilyRecord, user: Option<&UserRecord>) -> bool {
    user.is_some_and(|u| u.user_id == claims.sub && claims.iat >= session_cut_off(family, u))
}

/// Whether a caller may revoke a token issued to a client (RFC 7009 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationRight {
    /// The caller is the token's client, or the client is public (its tokens are
    /// revoked by whoever holds them, as the app itself cannot prove more), or no longer
    /// registered.
    Allowed,
    /// The token's client is confidential and the caller did not authenticate as a
    /// confidential client: 401 `invalid_client`.
    AuthenticationRequired,
    /// The token's client is confidential and the caller authenticated as another
    /// confidential client: refused (§2.1: "issued to the client making the request").
    NotTheCallers,
}

/// Who may revoke a token of `token_client` (`None`: not registered): `caller` is the
/// client the request authenticated, `None` for a request that named none.
pub fn revocation_right(caller: Option<&ClientRecord>, token_client: Option<&ClientRecord>) -> RevocationRight {
    match token_client {
        Some(owner) if owner.client_type == ClientType::Confidential => match caller {
            Some(caller) if caller.client_id == owner.client_id => RevocationRight::Allowed,
            Some(caller) if caller.client_type == ClientType::Confidential => RevocationRight::NotTheCallers,
            _ => RevocationRight::AuthenticationRequired,
        },
        _ => RevocationRight::Allowed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! One test per revocation outcome, on plain values: no stack.
    use serde_json::{json, Value};

    use super::*;
    use crate::rules::keys::testing::LocalSigner;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_cut_off_lies_past_the_previous_one_even_within_its_second() {
        assert_eq!(cut_off_after(100, 0), 102, "the margin ahead of now");
        assert_eq!(cut_off_after(100, 90), 102, "an old cut-off changes nothing");
        assert_eq!(cut_off_after(100, 102), 103, "a change in the same second as the previous one");
        assert_eq!(cut_off_after(100, 103), 104, "and the one after it");
        assert_eq!(cut_off_after(100, u64::MAX), u64::MAX, "no overflow");
    }

    fn claims() -> Value {
        json!({"iss": "https://auth.example.test", "sub": "u-1", "aud": "api", "exp": NOW + 600, "iat": NOW - 10,
               "jti": "j-1", "client_id": "first-party", "scope": "read", "sid": "s-1"})
    }

    fn setup() -> (LocalSigner, Verifier) {
        let signer = LocalSigner::new();
        let verifier = Verifier::new(vec![signer.trusted()], "https://auth.example.test".into(), "api".into(), 30);
        (signer, verifier)
    }

    #[test]
    fn a_refresh_token_targets_its_session_without_any_check_of_its_secret() {
        let (_, verifier) = setup();
        let refresh = RefreshToken::new_family();
        assert_eq!(classify(&refresh.encode(), &verifier, NOW), RevokeTarget::Session(refresh));
    }

    #[test]
    fn a_valid_access_token_targets_its_jti() {
        let (signer, verifier) = setup();
        match classify(&signer.sign_claims(&claims()), &verifier, NOW) {
            RevokeTarget::AccessToken(c) => assert_eq!((c.jti.as_str(), c.exp), ("j-1", NOW + 600)),
            other => panic!("expected the access token, got {other:?}"),
        }
    }

    #[test]
    fn an_expired_foreign_or_malformed_token_targets_nothing() {
        let (signer, verifier) = setup();
        let mut expired = claims();
        expired["exp"] = json!(NOW - 60);
        let mut no_sid = claims();
        no_sid.as_object_mut().unwrap().remove("sid");
        let (stranger, _) = setup();
        for token in [
            signer.sign_claims(&expired),
            signer.sign_claims(&no_sid),
            stranger.sign_claims(&claims()),
            "not-a-token".to_owned(),
            format!("{}x", RefreshToken::new_family().encode()),
        ] {
            assert_eq!(classify(&token, &verifier, NOW), RevokeTarget::Nothing, "{token}");
        }
    }

    fn revoked_family(token: &RefreshToken) -> FamilyRecord {
        let user = UserRecord::new("u-1".into(), "$argon2id$...".into(), vec!["read".into()], 0);
        let policy = crate::rules::login::LoginPolicy {
            client_id: "first-party".into(),
            refresh_ttl_secs: 3600,
            refresh_idle_secs: 3600,
            max_failures: 5,
            failure_window_secs: 60,
            device_ttl_secs: 3600,
        };
        let scope = crate::rules::scope::Scope::from_tokens(["read"]);
        let context = crate::rules::session_context::SessionContext::default();
        let origin = crate::rules::login::SessionOrigin { bound_to: None, device_name: None, context: &context };
        let family = crate::rules::login::new_family("alice", &user, &scope, token, NOW, &policy, &origin);
        FamilyRecord { status: FamilyStatus::Revoked, ..family }
    }

    #[test]
    fn a_repeated_logout_owes_the_sid_entry_until_it_is_recorded_as_written() {
        let token = RefreshToken::new_family();
        let revoked = revoked_family(&token);
        assert!(sid_entry_owed(Some(&revoked), &token.hash()), "revoked, entry not yet written");
        let written = FamilyRecord { sid_denylisted: true, ..revoked.clone() };
        assert!(!sid_entry_owed(Some(&written), &token.hash()), "written once is enough");
        let active = FamilyRecord { status: FamilyStatus::Active, ..revoked.clone() };
        assert!(!sid_entry_owed(Some(&active), &token.hash()), "an active family is revoked, not re-denylisted");
        let forged = RefreshToken::from_parts(&token.family_id(), 0, [7; 32]).unwrap();
        assert!(!sid_entry_owed(Some(&revoked), &forged.hash()), "a forged token with the real family id");
        assert!(!sid_entry_owed(None, &token.hash()), "no family");
    }

    #[test]
    fn revoke_all_takes_the_subject_of_a_valid_bearer_and_refuses_anything_else() {
        let (signer, verifier) = setup();
        assert_eq!(revoke_all_subject(&signer.sign_claims(&claims()), &verifier, NOW).unwrap().sub, "u-1");
        let refresh = RefreshToken::new_family().encode();
        assert!(matches!(revoke_all_subject(&refresh, &verifier, NOW), Err(ApiError::InvalidToken)));
        let mut exchanged = claims();
        exchanged["act"] = json!({"sub": "svc-b"});
        assert!(revoke_all_subject(&signer.sign_claims(&exchanged), &verifier, NOW).is_err(), "in a service's hands");
        let mut service = claims();
        service.as_object_mut().unwrap().remove("sid");
        service["sub"] = json!("first-party");
        assert!(revoke_all_subject(&signer.sign_claims(&service), &verifier, NOW).is_err(), "a service's own token");
        let (stranger, _) = setup();
        let foreign = stranger.sign_claims(&claims());
        assert!(matches!(revoke_all_subject(&foreign, &verifier, NOW), Err(ApiError::InvalidToken)));
    }

    #[test]
    fn a_confidential_clients_token_is_revoked_by_that_client_only_a_public_ones_by_its_holder() {
        let client = |id: &str, client_type: ClientType| ClientRecord {
            client_type,
            ..ClientRecord::public(id, Vec::new(), Vec::new(), 0)
        };
        let (service, other) = (client("svc", ClientType::Confidential), client("other", ClientType::Confidential));
        let (app, other_app) = (client("app", ClientType::Public), client("app-2", ClientType::Public));
        use RevocationRight::*;
        let cases = [
            (Some(&service), Some(&service), Allowed),
            (None, Some(&service), AuthenticationRequired),
            (Some(&app), Some(&service), AuthenticationRequired),
            (Some(&other), Some(&service), NotTheCallers),
            (None, Some(&app), Allowed),
            (Some(&other_app), Some(&app), Allowed),
            (Some(&service), Some(&app), Allowed),
            (None, None, Allowed),
        ];
        for (caller, owner, right) in cases {
            let names = (caller.map(|c| &c.client_id), owner.map(|c| &c.client_id));
            assert_eq!(revocation_right(caller, owner), right, "{names:?}");
        }
    }
}
