//! `authctl dpop` as a shell runs it: with no configuration at all in its environment, the
//! key it writes, the thumbprint and the proof it prints, one value a line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use tokenauth::rules::dpop::{verify_proof, ProofRequest, ProofWindow};

/// `authctl` with an empty environment: no table names, no region, no endpoints.
fn authctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authctl")).args(args).env_clear().output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn authctl_dpop_needs_no_configuration_and_prints_a_proof_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("device.pem");
    let key = key.to_str().unwrap();
    let url = "http://127.0.0.1:3000/api/whoami";
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";

    let wrote = stdout(&authctl(&["dpop", "keygen", "--out", key]));
    let jkt = stdout(&authctl(&["dpop", "thumbprint", "--key", key])).trim().to_owned();
    assert!(wrote.contains(&jkt), "keygen names the thumbprint: {wrote}");

    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let printed =
        stdout(&authctl(&["dpop", "proof", "--key", key, "--method", "GET", "--url", url, "--access-token", token]));
    assert_eq!(printed.lines().count(), 1, "one proof, one line: {printed}");
    let request = ProofRequest {
        method: "GET",
        url,
        access_token_sha256: Some(tokenauth::rules::dpop::access_token_sha256(token)),
    };
    // iat is the time of the call: within 5 s of it.
    let window = ProofWindow { now: before, max_age: 5, leeway: 5 };
    let proof = verify_proof(printed.trim(), &request, &window, Some(&jkt)).unwrap();
    assert!(proof.iat >= before, "iat {} is the time of the call ({before})", proof.iat);

    let again = authctl(&["dpop", "keygen", "--out", key]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not replaced"));
    assert_eq!(stdout(&authctl(&["dpop", "thumbprint", "--key", key])).trim(), jkt, "the key is unchanged");
}
