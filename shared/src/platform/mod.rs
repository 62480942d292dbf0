//! The platform every layer above stands on: configuration read once at cold start, the
//! AWS SDK set-up, the clock, the audit trail, EMF metrics, and reads of polled state
//! finished beside the requests that started them. It decides nothing about tokens or
//! sessions; the types it parses into come from [`crate::rules`].

pub mod audit;
pub mod aws;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod read_beside;
pub mod retry;
