//! The edge: where requests meet the library. HTTP parsing and the one mapping from
//! [`crate::error::ApiError`] to a response ([`http`]), the account routes ([`account`]),
//! the bearer header ([`bearer`]), and the API Gateway authorizer's events and answers
//! ([`authorizer`]).

pub mod account;
pub mod authorizer;
pub mod bearer;
pub mod http;
