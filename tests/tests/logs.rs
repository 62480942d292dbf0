//! What login writes to the log: an audit line per outcome, and never a password, a
//! token, a hash or the username.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokenauth::platform::clock::SystemClock;
use tokenauth_tests::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn login_logs_audit_lines_and_no_secret_even_at_debug_level() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = config();
    let clients = clients().await;
    let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, user_id) = create_user(&config, &clients, "logs", &["read"]).await;

    let ok = tokenauth::edge::http::login(&service, &login_request(&username, &password, None)).await;
    let body = json_of(&ok);
    let wrong_password = format!("{password}-wrong");
    let failed = tokenauth::edge::http::login(&service, &login_request(&username, &wrong_password, None)).await;
    assert_eq!(failed.status(), 401);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .collect();
    assert_eq!(audit.len(), 2, "one audit line per login:\n{log}");
    assert_eq!(audit[0]["fields"]["outcome"], "success");
    assert_eq!(audit[0]["fields"]["user_id"], user_id.as_str());
    assert_eq!(audit[0]["fields"]["family_id"], family_of(body["refresh_token"].as_str().unwrap()).as_str());
    assert_eq!(audit[0]["fields"]["source_ip"], "198.51.100.7");
    assert_eq!(audit[1]["fields"]["outcome"], "failure");
    assert_eq!(audit[1]["fields"]["reason"], "wrong_password");

    let refresh = body["refresh_token"].as_str().unwrap();
    let secrets = [
        ("password", password.as_str()),
        ("wrong password", wrong_password.as_str()),
        ("username", username.as_str()),
        ("access token", body["access_token"].as_str().unwrap()),
        ("access token signature", body["access_token"].as_str().unwrap().rsplit('.').next().unwrap()),
        ("refresh token secret", secret_part(refresh)),
        ("refresh token hash", &tokenauth::rules::token::RefreshToken::parse(refresh).unwrap().hash()),
    ];
    for (what, secret) in secrets {
        assert!(!log.contains(secret), "the log contains the {what}");
    }
}
