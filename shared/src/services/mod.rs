//! Services: the rules of [`crate::rules`] with their I/O around them, one per function
//! (login, refresh, revoke, discovery), the key set at run time, the per-source limit and
//! the DPoP proofs of login and refresh, and the authorizer's revocation feed, DPoP proof
//! ledger and cache of verified tokens. Each reads, asks a rule, writes; the decisions are
//! not made here.

pub mod account;
pub mod client_auth;
pub mod clients;
pub mod discovery;
pub mod grants;
pub mod introspection;
pub mod keys;
pub mod limits;
pub mod liveness;
pub mod login;
pub mod proof_ledger;
pub mod refresh;
pub mod revocation_feed;
pub mod revoke;
pub mod token_dpop;
pub mod token_endpoint;
pub mod verified_tokens;

use std::sync::Arc;

use crate::platform::clock::{Clock, SystemClock};
use crate::platform::config::Config;
use crate::rules::keys::Signer;
use crate::rules::token::AccessTokenIssuer;
use crate::rules::verify::{Audiences, Verifier};

/// The one verifier of access tokens as a deployment configured it (issuer, the
/// audiences this API accepts, clock leeway), trusting no key until a [`keys::KeyRing`]
/// hands it the key set's. Every function that accepts an access token builds this one.
pub fn verifier_for(config: &Config) -> Verifier {
    verifier_accepting(config, Audiences::OneOf(config.accepted_audiences.clone()))
}

/// The same verifier accepting `audiences` instead: the token endpoint's (a token
/// exchange's subject token may be for any API) and introspection's.
pub fn verifier_accepting(config: &Config, audiences: Audiences) -> Verifier {
    Verifier::for_audiences(Vec::new(), config.issuer.clone(), audiences, config.token_leeway.as_secs())
}

/// The clock and the signer of login and refresh at cold start: the system clock and the
/// key set's current key, read once now so the first request need not.
async fn cold_start_signer(
    config: &Config,
    dynamodb: &aws_sdk_dynamodb::Client,
    kms: &aws_sdk_kms::Client,
) -> (Arc<dyn Clock>, Arc<dyn Signer>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let signer = keys::KeySetSigner::from_config(config, dynamodb.clone(), kms.clone(), clock.clone()).await;
    (clock, Arc::new(signer))
}

/// The issuer a deployment configured (`iss`, `aud`, lifetime), signing with `signer`.
pub fn issuer_for(signer: Arc<dyn Signer>, config: &Config) -> AccessTokenIssuer {
    AccessTokenIssuer::new(signer, config.issuer.clone(), config.audience.clone(), config.access_token_ttl)
}
