//! Login latency against the local stack (`make bench`), with the argon2id verification
//! measured on its own so the AWS part can be read off. Figures are printed; nothing here
//! asserts a time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tokenauth::platform::clock::SystemClock;
use tokenauth_tests::*;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn login(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = config();
    let (service, username, password, phc) = runtime.block_on(async {
        let clients = clients().await;
        let service = login_service(&config, &clients, Arc::new(SystemClock)).await;
        let (username, password, _) = create_user(&config, &clients, "bench", &["read"]).await;
        let phc = tokenauth::rules::password::hash(&password).unwrap();
        (service, username, password, phc)
    });
    let request = || tokenauth::LoginRequest {
        username: username.clone(),
        password: password.clone(),
        scope: None,
        device_token: None,
    };
    let meta = tokenauth::RequestMeta::default();

    let mut group = c.benchmark_group("login");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    group
        .bench_function("argon2id_verify", |b| b.iter(|| assert!(tokenauth::rules::password::verify(&password, &phc))));
    group.bench_function("login_end_to_end_local_stack", |b| {
        b.to_async(&runtime).iter(|| async { service.login(request(), &meta).await.unwrap() })
    });
    group.finish();

    // One summary with medians from a plain loop, so the split is printed side by side.
    const RUNS: usize = 40;
    let argon: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            assert!(tokenauth::rules::password::verify(&password, &phc));
            t.elapsed()
        })
        .collect();
    let logins: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            runtime.block_on(service.login(request(), &meta)).unwrap();
            t.elapsed()
        })
        .collect();
    // Failures for a name that exists and one that does not cost the same (both verify one
    // argon2id hash and count one failure). Fresh names each round keep throttling out.
    let failure = |name: String| {
        let t = Instant::now();
        let outcome = runtime.block_on(service.login(
            tokenauth::LoginRequest { username: name, password: "wrong".into(), scope: None, device_token: None },
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
        wrong.as_secs_f64() * 1e3,
        unknown.as_secs_f64() * 1e3,
        unknown.as_secs_f64() / wrong.as_secs_f64(),
    );

    // Refresh: one conditional write + one kms:Sign per rotation, no password hashing.
    let refresh = runtime.block_on(async { refresh_service(&config, &clients, Arc::new(SystemClock)).await });
    let mut token = runtime.block_on(service.login(request(), &meta)).unwrap().refresh_token;
    let rotations: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let out = runtime
                .block_on(
                    refresh.refresh(tokenauth::RefreshRequest { refresh_token: token.clone(), scope: None }, &meta),
                )
                .unwrap();
            let elapsed = t.elapsed();
            token = out.refresh_token;
            elapsed
        })
        .collect();
    println!(
        "\nrefresh (rotation) against the local stack, median of {RUNS}: {:.1} ms",
        median(rotations).as_secs_f64() * 1e3
    );

    let (argon, total) = (median(argon), median(logins));
    println!(
        "\nlogin against the local stack, median of {RUNS}: {:.1} ms total = argon2id {:.1} ms ({:.0}%) + the rest {:.1} ms (GetItem || reservation, then Sign || the family transaction)",
        total.as_secs_f64() * 1e3,
        argon.as_secs_f64() * 1e3,
        argon.as_secs_f64() / total.as_secs_f64() * 100.0,
        total.saturating_sub(argon).as_secs_f64() * 1e3,
    );
}

criterion_group!(benches, login);
criterion_main!(benches);
