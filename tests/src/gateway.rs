//! The local gateway that `with-stack.sh --gateway` starts, and a client of it
//! (`api-client`, which `tools/loadgen` calls through too): the end-to-end tests talk to it
//! as any client on the network would.

use std::time::{Duration, Instant};

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

/// The revocation lag the gateway's setup states: the authorizer's poll (API Gateway's
/// cache of authorizer answers is off in the template: a DPoP proof is good once).
pub fn stated_revocation_lag() -> Duration {
    let secs =
        |name| gateway_setting(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{name} unset"));
    Duration::from_secs(secs("REVOCATION_POLL_SECS"))
}

/// A client of the gateway that `with-stack.sh --gateway` started.
pub fn gateway_client() -> ApiClient {
    ApiClient::new(&gateway_url()).expect("GATEWAY_URL is the local gateway")
}

/// Runs a client script of `tests/clients/` with the venv's Python, or with `node`
/// (Debian's, on PATH; the libraries come from `.local/node`), and parses the one JSON
/// object it prints.
pub async fn run_client(program: &str, script: &str, args: &[&str]) -> serde_json::Value {
    let root = crate::repo_root();
    let program = if program == "node" { "node".into() } else { root.join(program) };
    let output = tokio::process::Command::new(&program)
        .arg(root.join("tests/clients").join(script))
        .args(args)
        .env("NODE_PREFIX", root.join(".local/node"))
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} {script}: {e} (make tools installs it)", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{script} failed:\n{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

/// What three verifiers we did not write made of an access token, each fetching the
/// gateway's JWKS and choosing the key by `kid`: PyJWT's `PyJWKClient`, AWS's
/// `aws-jwt-verify` and panva's `jose` (which also insists on `typ: at+jwt`). Each also
/// tried a copy with its payload changed.
pub struct ThirdPartyVerdicts {
    /// `pyjwt_verify.py`'s output.
    pub pyjwt: serde_json::Value,
    /// `aws_jwt_verify.mjs`'s output.
    pub aws_jwt_verify: serde_json::Value,
    /// `jose_verify.mjs`'s output.
    pub jose: serde_json::Value,
}

/// Runs the three verifiers at once on `token` against the gateway's JWKS; each script
/// fails (and this panics) if the genuine token does not verify.
pub async fn third_party_verdicts(token: &str, issuer: &str, audience: &str) -> ThirdPartyVerdicts {
    let jwks_url = gateway_client().url("/.well-known/jwks.json");
    let args = [jwks_url.as_str(), token, issuer, audience];
    let (pyjwt, aws_jwt_verify, jose) = tokio::join!(
        run_client(".local/venv/bin/python", "pyjwt_verify.py", &args),
        run_client("node", "aws_jwt_verify.mjs", &args),
        run_client("node", "jose_verify.mjs", &args),
    );
    ThirdPartyVerdicts { pyjwt, aws_jwt_verify, jose }
}

/// Polls `whoami` with `access_token` until it is refused: the refusal, and when the last
/// request that was still allowed had started (the lag is about requests that begin after
/// it; a request may take long when cargo lambda watch starts an instance cold).
pub async fn last_allowed_start(gateway: &ApiClient, access_token: &str, limit: Duration) -> (Duration, Answer) {
    let started = Instant::now();
    let mut last_allowed = Duration::ZERO;
    loop {
        let sent = started.elapsed();
        let answer = gateway.whoami(access_token).await.unwrap();
        if answer.status != 200 || started.elapsed() > limit {
            return (last_allowed, answer);
        }
        last_allowed = sent;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
