//! The rules: every decision the service makes, over plain values, with no I/O. Each has
//! unit tests by outcome and needs no stack. The layers above read and write around them
//! ([`crate::services`]) and persist their records ([`crate::store`]).

pub mod client_assertion;
pub mod clients;
pub mod dpop;
pub mod grants;
pub mod introspection;
pub mod keys;
pub mod limits;
pub mod login;
pub mod password;
pub mod password_policy;
pub mod polled;
pub mod records;
pub mod revocations;
pub mod revoke;
pub mod rotation;
pub mod routes;
pub mod scope;
pub mod session_context;
pub mod sessions;
pub mod token;
pub mod username;
pub mod verify;
