//! # tokenauth
//!
//! The library behind the token-authentication Lambdas: login with a username and
//! password, an access token (RFC 9068 JWT, ES256 or RS256) signed by a key that never
//! leaves AWS KMS, and an opaque refresh token whose session family lives in DynamoDB.
//!
//! Read it top to bottom in this order: [`config`] (what a deployment sets), [`login`]
//! (the login rules), [`token`] (what is issued), [`keys`] (how it is signed and which
//! keys are trusted), [`verify`] (the one verifier of access tokens), [`rotation`] and
//! [`refresh`] (refresh-token rotation, retry and reuse), [`revoke`] (ending sessions),
//! [`revocation_cache`] and [`authorizer`] (the API Gateway hot path), [`discovery`] (the JWKS and metadata others
//! verify with), [`store`] (where state lives), [`http`] and [`bearer`] (the one place requests and errors meet HTTP).
//! The function binaries only wire these together; `docs/architecture.md` maps the tree.
#![warn(missing_docs)]

pub mod audit;
pub mod authorizer;
pub mod aws;
pub mod bearer;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod error;
pub mod http;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod password;
pub mod refresh;
pub mod revocation_cache;
pub mod revoke;
pub mod rotation;
pub mod scope;
pub mod store;
pub mod token;
pub mod username;
pub mod verify;

pub use audit::RequestMeta;
pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{ApiError, ConfigError, StartError};
pub use login::{LoginRequest, LoginService};
pub use refresh::{RefreshRequest, RefreshService};
pub use revoke::{RevocationService, RevokeRequest, Revoker};
pub use token::TokenResponse;
