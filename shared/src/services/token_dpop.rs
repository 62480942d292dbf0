//! The DPoP proof of a login, a token request or a revocation (RFC 9449 §4–5, §7.1 for
//! revoke-all's bound access token): checked without I/O first
//! ([`crate::rules::dpop::verify_proof`], before anything that costs: the password hash,
//! a signature, a write), then its `jti` recorded once in the Proofs table, beside the
//! reads the request makes anyway. Whether the proof's key fits the session is the
//! rotation's question ([`crate::rules::rotation::key_check`]).

use std::fmt;

use crate::error::{ApiError, DependencyError};
use crate::platform::config::Config;
use crate::rules::dpop::{
    access_token_sha256, called_url, verify_proof, Proof, ProofRejection, ProofRequest, ProofWindow,
};
use crate::store::{DynamoProofs, ProofUse};

/// A `DPoP` header as the edge found it, with what names the URL the client called.
#[derive(Clone)]
pub struct PresentedProof {
    /// The proof (a compact JWS). Never logged.
    pub proof: String,
    /// `X-Forwarded-Proto`, as API Gateway set it.
    pub forwarded_proto: Option<String>,
    /// `Host`: the domain the client called.
    pub host: Option<String>,
    /// The path as the client sent it (with the stage, if the stage is in the URL).
    pub path: String,
    /// The path within the API (no stage): what follows `PUBLIC_BASE_URL` when it is set.
    pub api_path: String,
}

impl fmt::Debug for PresentedProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedProof").field("host", &self.host).field("path", &self.path).finish_non_exhaustive()
    }
}

/// Why a proof at login or the token endpoint was refused: 400 `invalid_dpop_proof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRefusal {
    /// `PROOFS_TABLE` is empty: this deployment accepts no proof.
    Disabled,
    /// The proof itself, its replay, or its key.
    Rejected(ProofRejection),
}

impl ProofRefusal {
    /// The audit/metric class.
    pub fn class(self) -> &'static str {
        match self {
            Self::Disabled => "dpop_disabled",
            Self::Rejected(rejection) => rejection.class(),
        }
    }

    /// What the client is told (`error_description`): a fixed text, never the proof.
    pub fn description(self) -> &'static str {
        match self {
            Self::Disabled => "DPoP is not enabled",
            Self::Rejected(rejection) => rejection.description(),
        }
    }
}

impl From<ProofRefusal> for ApiError {
    fn from(refusal: ProofRefusal) -> Self {
        ApiError::InvalidDpopProof(refusal.description())
    }
}

impl From<ProofRejection> for ProofRefusal {
    fn from(rejection: ProofRejection) -> Self {
        Self::Rejected(rejection)
    }
}

/// The proofs of one token endpoint: the Proofs table (none when DPoP is off), the window
/// and the public URL they are checked against.
#[derive(Debug, Clone)]
pub struct TokenProofs {
    proofs: Option<DynamoProofs>,
    window: ProofWindow,
    public_base_url: Option<String>,
}

impl TokenProofs {
    /// The proofs a deployment configured (`PROOFS_TABLE`, `DPOP_PROOF_MAX_AGE_SECS`,
    /// `PUBLIC_BASE_URL`).
    pub fn new(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        let table = &config.dpop.proofs_table;
        Self {
            proofs: (!table.is_empty()).then(|| DynamoProofs::new(dynamodb, table)),
            window: config.proof_window(0),
            public_base_url: config.dpop.public_base_url.clone(),
        }
    }

    /// Checks a `POST` proof against the URL the client called and the window at `now`:
    /// `None` without one. Everything but its replay, which [`TokenProofs::record`] asks.
    pub fn check(&self, presented: Option<&PresentedProof>, now: u64) -> Result<Option<Proof>, ProofRefusal> {
        self.verify(presented, now, None, None)
    }

    /// [`TokenProofs::check`] for a request that presents a bound access token too
    /// (revoke-all, RFC 9449 §7.1): the proof's `ath` must hash `access_token` and its key
    /// be the token's `bound_to`.
    pub fn check_presenting(
        &self,
        presented: Option<&PresentedProof>,
        now: u64,
        access_token: &str,
        bound_to: &str,
    ) -> Result<Option<Proof>, ProofRefusal> {
        self.verify(presented, now, Some(access_token_sha256(access_token)), Some(bound_to))
    }

    fn verify(
        &self,
        presented: Option<&PresentedProof>,
        now: u64,
        access_token_sha256: Option<[u8; 32]>,
        bound_to: Option<&str>,
    ) -> Result<Option<Proof>, ProofRefusal> {
        let Some(presented) = presented else { return Ok(None) };
        if self.proofs.is_none() {
            return Err(ProofRefusal::Disabled);
        }
        let path = if self.public_base_url.is_some() { &presented.api_path } else { &presented.path };
        let url = called_url(
            self.public_base_url.as_deref(),
            presented.forwarded_proto.as_deref(),
            presented.host.as_deref(),
            path,
        )
        .ok_or(ProofRejection::WrongUrl)?;
        let request = ProofRequest { method: "POST", url: &url, access_token_sha256 };
        let window = ProofWindow { now, ..self.window };
        Ok(Some(verify_proof(&presented.proof, &request, &window, bound_to)?))
    }

    /// Records the use of `proof` (one conditional write shared by every instance): a
    /// second use within its window is refused. No proof: nothing to record, no call.
    pub async fn record(&self, proof: Option<&Proof>, now: u64) -> Result<Result<(), ProofRefusal>, DependencyError> {
        let (Some(proof), Some(proofs)) = (proof, &self.proofs) else { return Ok(Ok(())) };
        let window = ProofWindow { now, ..self.window };
        // Boxed: an SDK call's future is large, and this one sits beside the request's
        // other reads inside the login's and the refresh's futures.
        match Box::pin(proofs.record(&proof.replay_key(), window.expires_at(proof.iat), now)).await? {
            ProofUse::First => Ok(Ok(())),
            ProofUse::Replayed => Ok(Err(ProofRejection::Replayed.into())),
        }
    }
}
