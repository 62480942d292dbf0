//! # tokenauth
//!
//! The library behind the token-authentication Lambdas: login with a username and
//! password, an access token (RFC 9068 JWT, ES256 or RS256) signed by a key that never
//! leaves AWS KMS, and an opaque refresh token whose session family lives in DynamoDB.
//!
//! The tree is the diagram. Each folder is a layer and imports only from the layers below
//! it (a test, `shared/tests/layers.rs`, keeps it so):
//!
//! ```text
//! edge       HTTP parsing and the one error mapping, bearer, the authorizer's events and answers
//! services   login, refresh, revoke, discovery, keys at run time: the I/O around the rules
//! store      DynamoDB repositories
//! platform   config, AWS SDK set-up, clock, audit, metrics
//! rules      every decision, over plain values, no I/O
//! error      the error vocabulary of every layer
//! ```
//!
//! Read it bottom up: [`rules`] says what the service decides, [`services`] when it reads
//! and writes, [`edge`] how requests arrive. The function binaries only wire these
//! together; `docs/architecture.md` maps the tree.
#![warn(missing_docs)]

pub mod edge;
pub mod error;
pub mod platform;
pub mod rules;
pub mod services;
pub mod store;

pub use error::{ApiError, ConfigError, StartError};
pub use platform::audit::RequestMeta;
pub use platform::clock::{Clock, SystemClock};
pub use platform::config::Config;
pub use rules::token::TokenResponse;
pub use services::account::AccountService;
pub use services::introspection::{IntrospectionRequest, IntrospectionService};
pub use services::login::{LoginRequest, LoginService};
pub use services::refresh::{RefreshRequest, RefreshService};
pub use services::revoke::{RevocationService, RevokeRequest, Revoker};
pub use services::token_endpoint::TokenService;
