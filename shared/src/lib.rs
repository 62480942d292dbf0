//! # tokenauth
//!
//! The library behind the token-authentication Lambdas: login with a username and
//! password, an access token (RFC 9068 JWT, ES256) signed by a key that never leaves
//! AWS KMS, and an opaque refresh token whose session family lives in DynamoDB.
//!
//! Read it top to bottom in this order: [`config`] (what a deployment sets),
//! [`session`] (the login rules), [`token`] (what is issued), [`keys`] (how it is signed),
//! [`rotation`] and [`refresh`] (refresh-token rotation, retry and reuse), [`revoke`]
//! (ending sessions), [`verify`], [`revocation_cache`] and [`authorizer`] (the API Gateway
//! hot path), [`store`] (where state lives), [`http`] (the one place requests and errors
//! meet HTTP). The function binaries only wire these together.

pub mod audit;
pub mod authorizer;
pub mod aws;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod refresh;
pub mod revocation_cache;
pub mod revoke;
pub mod rotation;
pub mod scope;
pub mod session;
pub mod store;
pub mod token;
pub mod username;
pub mod verify;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{ApiError, ConfigError};
pub use refresh::{RefreshRequest, RefreshService};
pub use revoke::{RevocationService, RevokeRequest, Revoker};
pub use session::{LoginRequest, LoginService, RequestMeta, TokenResponse};
