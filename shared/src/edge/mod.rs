//! The edge: where requests meet the library. HTTP parsing and the one mapping from
//! [`crate::error::ApiError`] to a response ([`http`]), the bearer header ([`bearer`]), and
//! the API Gateway authorizer's events and answers ([`authorizer`]).

pub mod authorizer;
pub mod bearer;
pub mod http;
