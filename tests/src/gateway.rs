//! The local gateway that `with-stack.sh --gateway` starts, and a client of it
//! (`api-client`, which `tools/loadgen` calls through too): the end-to-end tests talk to it
//! as any client on the network would.

use std::time::Duration;

pub use api_client::{Answer, ApiClient};

/// The gateway's address, from `with-stack.sh --gateway`.
pub fn gateway_url() -> String {
    std::env::var("GATEWAY_URL").expect(
        "GATEWAY_URL is not set: run the end-to-end tests through `make test` (infra/local/with-stack.sh --gateway)",
    )
}

/// The `NAME=VALUE,...` assignments of a list variable of `with-stack.sh --gateway`.
fn assignments(variable: &str) -> Vec<(String, String)> {
    let list = std::env::var(variable).unwrap_or_default();
    list.split(',').filter_map(|a| a.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A setting given to the functions behind the gateway (`GATEWAY_FUNCTION_ENV`), or to
/// the gateway as a template parameter (`GATEWAY_PARAMETERS`).
pub fn gateway_setting(name: &str) -> Option<String> {
    ["GATEWAY_FUNCTION_ENV", "GATEWAY_PARAMETERS"]
        .iter()
        .flat_map(|variable| assignments(variable))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The configuration the functions behind the gateway run with: the stack's, and
/// `GATEWAY_FUNCTION_ENV` over it.
pub fn gateway_function_config() -> tokenauth::Config {
    let settings = assignments("GATEWAY_FUNCTION_ENV");
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::config_with(&borrowed)
}

/// The revocation lag the gateway's setup states: the authorizer's poll plus the cache.
pub fn stated_revocation_lag() -> Duration {
    let secs =
        |name| gateway_setting(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{name} unset"));
    Duration::from_secs(secs("REVOCATION_POLL_SECS") + secs("AuthorizerCacheSecs"))
}

/// A client of the gateway that `with-stack.sh --gateway` started.
pub fn gateway_client() -> ApiClient {
    ApiClient::new(&gateway_url()).expect("GATEWAY_URL is the local gateway")
}
