//! Where the authorizer records each accepted DPoP proof, so that its `jti` is accepted once
//! across every instance: the Proofs table ([`DynamoProofs`], one conditional `PutItem`,
//! tested against DynamoDB Local) in production. Behind a trait so the benchmark and the
//! unit tests can take the handler's own time apart from the write's (`MemoryProofs`,
//! feature `testing`: one process's memory is no replay protection for a fleet).

use std::future::Future;
use std::pin::Pin;

use crate::error::DependencyError;
use crate::store::{DynamoProofs, ProofUse};

/// A boxed future of one proof's record.
pub type RecordFuture<'a> = Pin<Box<dyn Future<Output = Result<ProofUse, DependencyError>> + Send + 'a>>;

/// Records a proof's use once within its window.
pub trait ProofLedger: Send + Sync {
    /// Records `replay_key` until `expires_at` (Unix seconds) unless it is recorded already
    /// and alive at `now`: [`ProofUse::First`] the first time, [`ProofUse::Replayed`] after.
    fn record<'a>(&'a self, replay_key: &'a str, expires_at: u64, now: u64) -> RecordFuture<'a>;
}

impl ProofLedger for DynamoProofs {
    fn record<'a>(&'a self, replay_key: &'a str, expires_at: u64, now: u64) -> RecordFuture<'a> {
        Box::pin(DynamoProofs::record(self, replay_key, expires_at, now))
    }
}

#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryProofs;

#[cfg(any(test, feature = "testing"))]
mod memory {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use super::{ProofLedger, RecordFuture};
    use crate::store::ProofUse;

    /// The ledger in one process's memory, for benchmarks and unit tests only: what the
    /// table does (once per key while alive), without the network.
    #[derive(Debug, Default)]
    pub struct MemoryProofs {
        seen: Mutex<HashMap<String, u64>>,
    }

    impl MemoryProofs {
        /// How many proofs are recorded (expired ones included until they are replaced).
        pub fn len(&self) -> usize {
            self.seen.lock().unwrap_or_else(PoisonError::into_inner).len()
        }

        /// Whether none is.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    impl ProofLedger for MemoryProofs {
        fn record<'a>(&'a self, replay_key: &'a str, expires_at: u64, now: u64) -> RecordFuture<'a> {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let outcome = match seen.get(replay_key) {
                Some(&until) if until >= now => ProofUse::Replayed,
                _ => {
                    seen.insert(replay_key.to_owned(), expires_at);
                    ProofUse::First
                }
            };
            Box::pin(std::future::ready(Ok(outcome)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_ledger_accepts_a_key_once_while_it_lives() {
        let ledger = MemoryProofs::default();
        assert_eq!(ledger.record("k#1", 100, 50).await.ok(), Some(ProofUse::First));
        assert_eq!(ledger.record("k#1", 100, 100).await.ok(), Some(ProofUse::Replayed));
        assert_eq!(ledger.record("k#2", 100, 60).await.ok(), Some(ProofUse::First));
        // Past its TTL the entry is gone, as DynamoDB's condition treats it.
        assert_eq!(ledger.record("k#1", 200, 101).await.ok(), Some(ProofUse::First));
        assert_eq!(ledger.len(), 2);
    }
}
