//! Login and refresh latency against the local stack (`make bench`), with each kind of
//! signing key (`kms`: a kms:Sign through the emulator per token; `envelope`: the key
//! decrypted once, tokens signed locally), and the parts the cost model (`make cost`) needs
//! measured on their own: the argon2id verification and one local ES256 signature. Figures
//! are printed, with the kms/envelope ratios; nothing here asserts a time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tokenauth::platform::clock::SystemClock;
use tokenauth::rules::keys::set::KeyKind;
use tokenauth::rules::keys::Signer;
use tokenauth::services::keys::CurrentKey;
use tokenauth_tests::*;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Login and refresh as the functions build them, on a key set whose current key is of one
/// kind, and a user to log in.
struct Deployment {
    kind: KeyKind,
    login: tokenauth::LoginService,
    refresh: tokenauth::TokenService,
    signer: tokenauth::services::keys::KeySetSigner,
    username: String,
    password: String,
}

async fn deployment(kind: KeyKind) -> Deployment {
    let config = deployment_of_kind(kind).await;
    let clients = clients().await;
    let login = login_service(&config, &clients, Arc::new(SystemClock)).await;
    let refresh = refresh_service(&config, &clients, Arc::new(SystemClock)).await;
    let signer = key_set_signer(&config, &clients, Arc::new(SystemClock)).await;
    let (username, password, _) = create_user(&config, &clients, "bench", &["read"]).await;
    Deployment { kind, login, refresh, signer, username, password }
}

impl Deployment {
    fn request(&self) -> tokenauth::LoginRequest {
        tokenauth::LoginRequest {
            username: self.username.clone(),
            password: self.password.clone(),
            scope: None,
            device_token: None,
            dpop: None,
            device_name: None,
        }
    }

    async fn rotate(&self, token: &Mutex<String>, meta: &tokenauth::RequestMeta) {
        let presented = token.lock().unwrap().clone();
        let out = self
            .refresh
            .refresh_service()
            .refresh(
                tokenauth::rules::clients::FIRST_PARTY_CLIENT_ID,
                tokenauth::RefreshRequest { refresh_token: presented, scope: None, dpop: None },
                meta,
            )
            .await
            .unwrap();
        *token.lock().unwrap() = out.refresh_token.expect("a refresh answers a refresh token");
    }
}

fn login(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = config();
    let deployments: Vec<Deployment> =
        [KeyKind::Kms, KeyKind::Envelope].into_iter().map(|kind| runtime.block_on(deployment(kind))).collect();
    let (password, phc) = {
        let password = deployments[0].password.clone();
        let phc = tokenauth::rules::password::hash(&password).unwrap();
        (password, phc)
    };
    let meta = tokenauth::RequestMeta::default();

    let mut group = c.benchmark_group("login");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    group
        .bench_function("argon2id_verify", |b| b.iter(|| assert!(tokenauth::rules::password::verify(&password, &phc))));
    for d in &deployments {
        group.bench_function(format!("login_end_to_end_local_stack_{}", d.kind.as_str()), |b| {
            b.to_async(&runtime).iter(|| async { d.login.login(d.request(), &meta).await.unwrap() })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("refresh");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    for d in &deployments {
        let token = Mutex::new(runtime.block_on(d.login.login(d.request(), &meta)).unwrap().refresh_token.unwrap());
        group.bench_function(format!("refresh_end_to_end_local_stack_{}", d.kind.as_str()), |b| {
            b.to_async(&runtime).iter(|| d.rotate(&token, &meta))
        });
    }
    group.finish();

    // One signature as the signers make it: locally with the decrypted envelope key (the CPU
    // the cost model adds to an envelope login or refresh), and through the emulator.
    let payload = serde_json::json!({"iss": config.issuer, "sub": "Qwn809P3Ikkqm_y_1SjkkA", "aud": config.audience,
        "exp": 1_900_000_900u64, "iat": 1_900_000_000u64, "jti": "EeH4P8eCg1829Eb6QYd4pg", "client_id": "first-party",
        "scope": "read", "sid": "rMMPcdbUfb0W-ykXTJ4nCg"})
    .to_string();
    let mut group = c.benchmark_group("signing");
    group.sample_size(30).measurement_time(Duration::from_secs(4));
    for d in &deployments {
        let key = runtime.block_on(d.signer.current()).unwrap();
        let name = match key.as_ref() {
            CurrentKey::Kms(_) => "es256_kms_sign_emulator",
            CurrentKey::Envelope(_) => "es256_envelope_sign_local",
        };
        group.bench_function(name, |b| b.to_async(&runtime).iter(|| key.sign_jws(payload.as_bytes())));
    }
    group.finish();

    // One summary with medians from a plain loop, so the split is printed side by side. The
    // kinds take turns, request by request, so the load of this shared machine falls on both.
    const RUNS: usize = 40;
    let argon: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            assert!(tokenauth::rules::password::verify(&password, &phc));
            t.elapsed()
        })
        .collect();
    let timed = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let mut logins = vec![Vec::new(); deployments.len()];
    let mut rotations = vec![Vec::new(); deployments.len()];
    let tokens: Vec<Mutex<String>> = deployments
        .iter()
        .map(|d| Mutex::new(runtime.block_on(d.login.login(d.request(), &meta)).unwrap().refresh_token.unwrap()))
        .collect();
    for _ in 0..RUNS {
        for (i, d) in deployments.iter().enumerate() {
            logins[i].push(timed(&|| {
                runtime.block_on(d.login.login(d.request(), &meta)).unwrap();
            }));
            rotations[i].push(timed(&|| runtime.block_on(d.rotate(&tokens[i], &meta))));
        }
    }
    let argon = median(argon);
    let logins: Vec<Duration> = logins.into_iter().map(median).collect();
    let rotations: Vec<Duration> = rotations.into_iter().map(median).collect();
    for (i, d) in deployments.iter().enumerate() {
        println!(
            "\n{} key: login against the local stack, median of {RUNS}: {:.1} ms total = argon2id {:.1} ms ({:.0}%) + \
             the rest {:.1} ms (GetItem || reservation, then signing || the family transaction); refresh (rotation) \
             {:.1} ms",
            d.kind.as_str(),
            ms(logins[i]),
            ms(argon),
            argon.as_secs_f64() / logins[i].as_secs_f64() * 100.0,
            ms(logins[i].saturating_sub(argon)),
            ms(rotations[i]),
        );
    }
    println!(
        "\nkms/envelope: login {:.2}, login without argon2id {:.2}, refresh {:.2}",
        logins[0].as_secs_f64() / logins[1].as_secs_f64(),
        logins[0].saturating_sub(argon).as_secs_f64() / logins[1].saturating_sub(argon).as_secs_f64(),
        rotations[0].as_secs_f64() / rotations[1].as_secs_f64(),
    );

    // Failures for a name that exists and one that does not cost the same (both verify one
    // argon2id hash and count one failure). Fresh names each round keep throttling out.
    let service = &deployments[0].login;
    let failure = |name: String| {
        let t = Instant::now();
        let outcome = runtime.block_on(service.login(
            tokenauth::LoginRequest {
                username: name,
                password: "wrong".into(),
                scope: None,
                device_token: None,
                dpop: None,
                device_name: None,
            },
            &meta,
        ));
        assert!(matches!(outcome, Err(tokenauth::ApiError::InvalidGrant)));
        t.elapsed()
    };
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    let clients = runtime.block_on(clients());
    for _ in 0..RUNS / 4 {
        let (existing, _, _) = runtime.block_on(create_user(&config, &clients, "bench-wrong", &["read"]));
        for _ in 0..4 {
            wrong.push(failure(existing.clone()));
        }
        let ghost = unique_username("bench-ghost");
        for _ in 0..4 {
            unknown.push(failure(ghost.clone()));
        }
    }
    let (wrong, unknown) = (median(wrong), median(unknown));
    println!(
        "\nfailed login, median of {RUNS}: wrong password {:.1} ms, unknown user {:.1} ms (ratio unknown/wrong {:.3})",
        ms(wrong),
        ms(unknown),
        unknown.as_secs_f64() / wrong.as_secs_f64(),
    );
}

criterion_group!(benches, login);
criterion_main!(benches);
