//! The introspection rules (RFC 7662), without I/O: who may introspect, which tokens a
//! client may see, when a refresh token is active, and the shape of the answer.
//!
//! Only confidential clients introspect (they authenticate; a public client could be
//! anyone). A client sees what concerns it and nothing else (RFC 7662 §4, privacy): an
//! access token for one of the APIs it is registered for (`aud` in its audiences, as
//! registered: the empty default of "the deployment's audience" lets a client *ask* for
//! tokens of that API, not read everyone's), one issued to it, or one it acts in (`act`);
//! a refresh token only if it was issued to it. Anything else is `{"active": false}`,
//! exactly as an unknown token is, so a caller learns nothing about tokens it may not see.

use serde::Serialize;

use crate::rules::clients::{ClientRecord, ClientType};
use crate::rules::records::{FamilyRecord, UserRecord};
use crate::rules::rotation::{follow_account, issued_by, AccountVerdict, Issued};
use crate::rules::token::{AccessClaims, Actor, Confirmation, RefreshToken};

/// The path of the introspection endpoint under the issuer.
pub const INTROSPECTION_PATH: &str = "/auth/introspect";

/// Whether an authenticated client may introspect at all: confidential clients only.
pub fn may_introspect(client: &ClientRecord) -> bool {
    client.client_type == ClientType::Confidential
}

/// Whether `client` may see this (verified) access token: its `aud` is one of the
/// client's registered audiences, or the client is in its chain (issued to it, or acting).
pub fn may_see_access_token(client: &ClientRecord, claims: &AccessClaims) -> bool {
    client.audiences.contains(&claims.aud) || claims.involves_client(&client.client_id)
}

/// Whether a verified access token is still within its lifetime at `now` (RFC 7662 §2.2:
/// active means "before its expiration time"). The verifier allows a leeway past `exp`
/// for clocks that disagree between hosts; introspection answers with this service's own
/// clock, whether the token is good right now, so it allows none.
pub fn is_unexpired(claims: &AccessClaims, now: u64) -> bool {
    now < claims.exp
}

/// Whether `client` may see a refresh token of `family`: only the client it was issued to.
pub fn may_see_refresh_token(client: &ClientRecord, family: &FamilyRecord) -> bool {
    family.client_id == client.client_id
}

/// Whether `presented` is `family`'s current token (compared in constant time) and the
/// family alive at `now` and bound to an account: what a refresh token needs before its
/// account is worth reading.
pub fn is_current_and_alive(family: &FamilyRecord, presented: &RefreshToken, now: u64) -> bool {
    issued_by(family, &presented.hash()) == Issued::Current
        && family.generation == presented.generation()
        && family.is_alive(now)
        && family.user_key.is_some()
}

/// The scope a refresh token of `family` is good for now, if it is active at `now`: the
/// family is alive, `presented` is its current token (compared in constant time), and its
/// owner's account still holds it (the same user, active, in the same sessions epoch; a
/// narrowed account narrows the scope, as the next rotation would). `None`: inactive.
pub fn active_refresh_scope(
    family: &FamilyRecord,
    presented: &RefreshToken,
    user: Option<&UserRecord>,
    now: u64,
) -> Option<Vec<String>> {
    if !is_current_and_alive(family, presented, now) {
        return None;
    }
    match follow_account(family, user) {
        AccountVerdict::Unchanged => Some(family.scopes.clone()),
        AccountVerdict::Follow(state) => Some(state.scopes),
        AccountVerdict::Dead => None,
    }
}

/// `token_type` of an active answer.
const BEARER: &str = "Bearer";
const DPOP: &str = "DPoP";
const REFRESH_TOKEN: &str = "refresh_token";

/// An RFC 7662 §2.2 answer: `{"active": false}` and nothing else, or `active` with the
/// token's claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Introspection {
    /// Whether the token is live right now.
    pub active: bool,
    /// The granted scope, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The subject: a user id, or a service's own client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The API the access token is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Expiry, Unix seconds (a refresh token: its family's, the sooner of idle and absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The access token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `Bearer`, `DPoP` (an access token bound to a key) or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The session (refresh-token family); none for a service's own token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The actor chain of an exchanged token (RFC 8693 §4.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The DPoP key the token is bound to (RFC 9449 §6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl Introspection {
    /// `{"active": false}`: whatever the reason, nothing more is said.
    pub fn inactive() -> Self {
        Self::default()
    }

    /// A live access token: its claims.
    pub fn access_token(claims: &AccessClaims) -> Self {
        Self {
            active: true,
            scope: Some(claims.scope.clone()),
            client_id: Some(claims.client_id.clone()),
            sub: Some(claims.sub.clone()),
            aud: Some(claims.aud.clone()),
            iss: Some(claims.iss.clone()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            jti: Some(claims.jti.clone()),
            token_type: Some(if claims.cnf.is_some() { DPOP } else { BEARER }),
            sid: claims.sid.clone(),
            act: claims.act.clone(),
            cnf: claims.cnf.clone(),
        }
    }

    /// A live refresh token of `family`, good for `scopes` ([`active_refresh_scope`]): the
    /// family's state. Issued when the family last rotated (or at login); bound to the
    /// family's DPoP key if `presented` was issued bound.
    pub fn refresh_token(family: &FamilyRecord, presented: &RefreshToken, scopes: &[String], issuer: &str) -> Self {
        let bound = family.jkt.as_ref().filter(|_| presented.generation() >= family.bound_since.unwrap_or(0));
        Self {
            active: true,
            scope: Some(scopes.join(" ")),
            client_id: Some(family.client_id.clone()),
            sub: Some(family.user_id.clone()),
            iss: Some(issuer.to_owned()),
            exp: Some(family.expires_at.min(family.idle_expires_at)),
            iat: Some(family.rotated_at.unwrap_or(family.created_at)),
            token_type: Some(REFRESH_TOKEN),
            sid: Some(family.family_id.clone()),
            cnf: bound.map(|jkt| Confirmation { jkt: jkt.clone() }),
            ..Self::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Who sees what, when a refresh token is active, and the answers' shapes, on plain
    //! values.
    use serde_json::json;

    use super::*;
    use crate::rules::clients::ClientStatus;
    use crate::rules::records::{FamilyStatus, UserStatus, HISTORY_SLOTS};

    const NOW: u64 = 1_800_000_000;

    fn service(id: &str, audiences: &[&str]) -> ClientRecord {
        ClientRecord {
            client_type: ClientType::Confidential,
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            status: ClientStatus::Active,
            ..ClientRecord::public(id, Vec::new(), Vec::new(), 0)
        }
    }

    fn claims() -> AccessClaims {
        serde_json::from_value(json!({"iss": "https://auth.example.test", "sub": "u-1",
            "aud": "https://orders.example.test", "exp": NOW + 600, "iat": NOW - 10, "jti": "j-1",
            "client_id": "first-party", "scope": "read write", "sid": "s-1"}))
        .unwrap()
    }

    #[test]
    fn an_access_token_is_active_until_its_expiry_with_no_leeway() {
        let claims = claims();
        assert!(is_unexpired(&claims, claims.exp - 1));
        assert!(!is_unexpired(&claims, claims.exp), "RFC 7519: exp is the first second it is no longer good");
        assert!(!is_unexpired(&claims, claims.exp + 1));
    }

    fn family(current: &RefreshToken) -> FamilyRecord {
        FamilyRecord {
            family_id: current.family_id(),
            user_id: "u-1".into(),
            client_id: "reports".into(),
            scopes: vec!["read".into(), "write".into()],
            token_hash: current.hash(),
            generation: current.generation(),
            recent: vec![String::new(); HISTORY_SLOTS],
            previous_hash: None,
            rotated_at: None,
            sealed_successor: None,
            retries: 0,
            status: FamilyStatus::Active,
            revoked_reason: None,
            revoked_at: None,
            sid_denylisted: false,
            created_at: NOW - 100,
            last_used_at: NOW - 100,
            idle_expires_at: NOW + 1_000,
            expires_at: NOW + 5_000,
            user_key: Some("alice".into()),
            user_version: 3,
            sessions_epoch: 1,
            not_before: 0,
            jkt: None,
            bound_since: None,
            device_name: None,
            network: None,
            user_agent: None,
            kept: None,
        }
    }

    fn user() -> UserRecord {
        UserRecord {
            version: 3,
            sessions_epoch: 1,
            ..UserRecord::new("u-1".into(), "hash".into(), vec!["read".into(), "write".into()], 0)
        }
    }

    #[test]
    fn only_confidential_clients_introspect() {
        assert!(may_introspect(&service("reports", &[])));
        assert!(!may_introspect(&ClientRecord::public("mobile", Vec::new(), Vec::new(), 0)));
    }

    #[test]
    fn a_client_sees_access_tokens_for_its_audiences_issued_to_it_or_acted_in_by_it() {
        let token = claims();
        assert!(may_see_access_token(&service("orders-api", &["https://orders.example.test"]), &token), "its API");
        assert!(!may_see_access_token(&service("billing-api", &["https://billing.example.test"]), &token));
        assert!(!may_see_access_token(&service("no-audiences", &[]), &token), "no default audience to see by");
        let issued_to = AccessClaims { client_id: "reports".into(), ..claims() };
        assert!(may_see_access_token(&service("reports", &[]), &issued_to), "issued to it");
        let nested = Actor { sub: "gateway".into(), act: Some(Box::new(Actor { sub: "reports".into(), act: None })) };
        let exchanged = AccessClaims { act: Some(nested), ..claims() };
        assert!(may_see_access_token(&service("reports", &[]), &exchanged), "acting, deep in the chain");
        assert!(may_see_access_token(&service("gateway", &[]), &exchanged), "acting, latest");
        assert!(!may_see_access_token(&service("stranger", &[]), &exchanged));
    }

    #[test]
    fn a_client_sees_only_the_refresh_tokens_issued_to_it() {
        let f = family(&RefreshToken::new_family());
        assert!(may_see_refresh_token(&service("reports", &[]), &f));
        assert!(!may_see_refresh_token(&service("orders-api", &[f.client_id.as_str()]), &f), "audiences do not count");
    }

    #[test]
    fn a_refresh_token_is_active_only_while_current_alive_and_held_by_its_account() {
        let current = RefreshToken::new_family();
        let f = family(&current);
        let both = vec!["read".to_owned(), "write".to_owned()];
        assert_eq!(active_refresh_scope(&f, &current, Some(&user()), NOW), Some(both));

        let successor = current.successor().unwrap();
        let rotated = FamilyRecord {
            token_hash: successor.hash(),
            generation: successor.generation(),
            previous_hash: Some(current.hash()),
            ..f.clone()
        };
        assert_eq!(active_refresh_scope(&rotated, &current, Some(&user()), NOW), None, "rotated out");
        assert!(active_refresh_scope(&rotated, &successor, Some(&user()), NOW).is_some(), "its successor");
        assert_eq!(active_refresh_scope(&f, &RefreshToken::new_family(), Some(&user()), NOW), None, "forged");

        let revoked = FamilyRecord { status: FamilyStatus::Revoked, ..f.clone() };
        assert_eq!(active_refresh_scope(&revoked, &current, Some(&user()), NOW), None, "revoked");
        assert_eq!(active_refresh_scope(&f, &current, Some(&user()), NOW + 1_000), None, "idle expired");
        let no_account = FamilyRecord { user_key: None, ..f.clone() };
        assert_eq!(active_refresh_scope(&no_account, &current, Some(&user()), NOW), None, "from before accounts");

        assert_eq!(active_refresh_scope(&f, &current, None, NOW), None, "account gone");
        let disabled = UserRecord { status: UserStatus::Disabled, version: 4, ..user() };
        assert_eq!(active_refresh_scope(&f, &current, Some(&disabled), NOW), None, "account disabled");
        let ended = UserRecord { sessions_epoch: 2, version: 4, ..user() };
        assert_eq!(active_refresh_scope(&f, &current, Some(&ended), NOW), None, "sessions ended");
        let other = UserRecord { user_id: "u-2".into(), ..user() };
        assert_eq!(active_refresh_scope(&f, &current, Some(&other), NOW), None, "another account, same name");
        let narrowed = UserRecord { scopes: vec!["read".into()], version: 4, ..user() };
        assert_eq!(active_refresh_scope(&f, &current, Some(&narrowed), NOW), Some(vec!["read".to_owned()]));
    }

    #[test]
    fn an_inactive_answer_says_active_false_and_nothing_else() {
        assert_eq!(serde_json::to_value(Introspection::inactive()).unwrap(), json!({"active": false}));
    }

    #[test]
    fn an_active_access_token_answer_carries_its_claims() {
        let answer = serde_json::to_value(Introspection::access_token(&claims())).unwrap();
        assert_eq!(
            answer,
            json!({"active": true, "scope": "read write", "client_id": "first-party", "sub": "u-1",
                   "aud": "https://orders.example.test", "iss": "https://auth.example.test", "exp": NOW + 600,
                   "iat": NOW - 10, "jti": "j-1", "token_type": "Bearer", "sid": "s-1"})
        );
        let service_token = AccessClaims { sid: None, sub: "reports".into(), client_id: "reports".into(), ..claims() };
        let answer = serde_json::to_value(Introspection::access_token(&service_token)).unwrap();
        assert!(answer.get("sid").is_none(), "a service's own token has no session: {answer}");
        let bound = AccessClaims {
            cnf: Some(Confirmation { jkt: "thumb".into() }),
            act: Some(Actor { sub: "gateway".into(), act: None }),
            ..claims()
        };
        let answer = serde_json::to_value(Introspection::access_token(&bound)).unwrap();
        assert_eq!(answer["token_type"], "DPoP");
        assert_eq!(answer["cnf"], json!({"jkt": "thumb"}));
        assert_eq!(answer["act"], json!({"sub": "gateway"}));
    }

    #[test]
    fn an_active_refresh_token_answer_is_its_familys_state() {
        let current = RefreshToken::new_family();
        let f = FamilyRecord { rotated_at: Some(NOW - 5), ..family(&current) };
        let answer = Introspection::refresh_token(&f, &current, &["read".to_owned()], "https://auth.example.test");
        assert_eq!(
            serde_json::to_value(answer).unwrap(),
            json!({"active": true, "scope": "read", "client_id": "reports", "sub": "u-1",
                   "iss": "https://auth.example.test", "exp": NOW + 1_000, "iat": NOW - 5,
                   "token_type": "refresh_token", "sid": f.family_id})
        );
        let fresh = family(&current);
        let answer = Introspection::refresh_token(&fresh, &current, &[], "https://auth.example.test");
        assert_eq!(answer.iat, Some(NOW - 100), "never rotated: issued at login");
        let bound = FamilyRecord { jkt: Some("thumb".into()), bound_since: Some(0), ..fresh };
        let answer = Introspection::refresh_token(&bound, &current, &[], "https://auth.example.test");
        assert_eq!(answer.cnf, Some(Confirmation { jkt: "thumb".into() }));
    }
}
