//! A local stand-in for API Gateway's HTTP API: the routes, Lambda authorizer, identity
//! sources and result cache of `infra/template.yaml`, in front of the real handlers running
//! under `cargo lambda watch`. For development and end-to-end tests, never for production.
//! What it serves is read by `sam-template`, the template reader the tests use too.

pub mod event;
pub mod gateway;
pub mod routing;
