//! `loadgen`: each client logs in, then calls the protected route a few times per refresh,
//! rotating its refresh token, until the time is up; a refused call makes it log in again.
//! With `--verify`, each client then presents the last refresh token it was given in a 200
//! (retrying 503s until the deadline): a 200 whose token is unusable afterwards is a lost
//! session. Prints per-route figures (requests/s, p50/p99, every status, refusals without a
//! `Retry-After`) as JSON; with `--timeline`, every call too (when it started, its status,
//! latency and `Retry-After`), for checks over a window of the run.
//! Loopback only: it refuses any other address.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_client::{Answer, ApiClient, NoAnswer};
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// The gateway, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    url: String,
    /// How long the load runs.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// A file of `username password` lines; client i uses line i mod n.
    #[arg(long)]
    users: std::path::PathBuf,
    /// Authorized calls per refresh.
    #[arg(long, default_value_t = 4)]
    calls_per_refresh: usize,
    /// Refreshes per session: then the client logs in again (a new session).
    #[arg(long, default_value_t = 10)]
    refreshes_per_session: usize,
    /// Afterwards, present each client's last refresh token (503s retried for this long).
    #[arg(long)]
    verify_secs: Option<u64>,
    /// Also print every call: `[route, started_ms, status, latency_ms, retry_after_secs]`,
    /// `started_ms` from the start of the run.
    #[arg(long)]
    timeline: bool,
}

/// What was observed: (route, status) → latencies in µs; gateway overhead in µs.
#[derive(Default)]
struct Observed {
    latencies: BTreeMap<(&'static str, u16), Vec<u64>>,
    overhead_us: Vec<u64>,
    /// A refresh token from a 200, refused later with invalid_grant during the load.
    lost_sessions: usize,
    /// Per route, 429 and 503 answers without a `Retry-After`.
    refusals_without_retry_after: BTreeMap<&'static str, usize>,
    /// Every call, if asked for.
    timeline: Option<Vec<Value>>,
}

#[derive(Clone)]
struct Gateway {
    api: ApiClient,
    observed: Arc<Mutex<Observed>>,
    /// When the run started: the timeline's zero.
    started: Instant,
}

/// A call's outcome: its status (0: no answer at all) and JSON body.
struct Outcome {
    status: u16,
    json: Value,
}

impl Gateway {
    /// Makes the call, recording its latency under `route` and the gateway's overhead.
    async fn call(&self, route: &'static str, call: impl Future<Output = Result<Answer, NoAnswer>>) -> Outcome {
        let started = Instant::now();
        let answer = call.await.ok();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let overhead = answer.as_ref().and_then(|a| {
            a.headers.get("x-gateway-overhead-us").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        });
        let retry_after = answer.as_ref().and_then(|a| {
            a.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        });
        let outcome = match answer {
            Some(answer) => Outcome { status: answer.status, json: answer.json },
            None => Outcome { status: 0, json: Value::Null },
        };
        let mut observed = self.observed.lock().await;
        observed.latencies.entry((route, outcome.status)).or_default().push(micros);
        observed.overhead_us.extend(overhead);
        if matches!(outcome.status, 429 | 503) && retry_after.is_none() {
            *observed.refusals_without_retry_after.entry(route).or_default() += 1;
        }
        let started_ms = started.duration_since(self.started).as_secs_f64() * 1e3;
        if let Some(timeline) = observed.timeline.as_mut() {
            timeline.push(json!([route, started_ms.round(), outcome.status, micros as f64 / 1e3, retry_after]));
        }
        outcome
    }

    async fn login(&self, username: &str, password: &str) -> Outcome {
        self.call("POST /auth/login", self.api.login(username, password)).await
    }

    async fn refresh(&self, refresh_token: &str) -> Outcome {
        self.call("POST /auth/refresh", self.api.refresh(refresh_token)).await
    }

    async fn whoami(&self, access_token: &str) -> Outcome {
        self.call("GET /api/whoami", self.api.whoami(access_token)).await
    }
}

fn tokens_of(answer: &Outcome) -> Option<(String, String)> {
    Some((answer.json["access_token"].as_str()?.to_owned(), answer.json["refresh_token"].as_str()?.to_owned()))
}

/// One client until `deadline`; returns the last refresh token it was given in a 200.
async fn client(
    gateway: Gateway,
    (username, password): (String, String),
    deadline: Instant,
    calls: usize,
    refreshes_per_session: usize,
) -> Option<String> {
    let mut tokens: Option<(String, String)> = None;
    let mut last_granted: Option<String> = None;
    let mut refreshes = 0;
    while Instant::now() < deadline {
        if refreshes == refreshes_per_session {
            refreshes = 0;
            tokens = None;
        }
        let Some((access, refresh)) = tokens.clone() else {
            let answer = gateway.login(&username, &password).await;
            tokens = tokens_of(&answer).filter(|_| answer.status == 200);
            if tokens.is_some() {
                last_granted = tokens.as_ref().map(|t| t.1.clone());
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        for _ in 0..calls {
            if gateway.whoami(&access).await.status == 503 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let answer = gateway.refresh(&refresh).await;
        match answer.status {
            200 => {
                tokens = tokens_of(&answer);
                last_granted = tokens.as_ref().map(|t| t.1.clone());
                refreshes += 1;
            }
            // A dependency down: keep the token and try again (the retry leeway covers a
            // rotation whose answer was lost).
            503 | 0 => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => {
                if answer.json["error"] == "invalid_grant" {
                    gateway.observed.lock().await.lost_sessions += 1;
                }
                tokens = None;
            }
        }
    }
    last_granted
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let api = match ApiClient::new(&args.url) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let users: Vec<(String, String)> = std::fs::read_to_string(&args.users)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .collect();
    if users.is_empty() {
        eprintln!("loadgen: no users in {}", args.users.display());
        return std::process::ExitCode::from(2);
    }
    let observed = Observed { timeline: args.timeline.then(Vec::new), ..Observed::default() };
    let started = Instant::now();
    let gateway = Gateway { api, observed: Arc::new(Mutex::new(observed)), started };

    let deadline = started + Duration::from_secs(args.secs);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let user = users[i % users.len()].clone();
        clients.spawn(client(gateway.clone(), user, deadline, args.calls_per_refresh, args.refreshes_per_session));
    }
    let mut last_tokens = Vec::new();
    while let Some(last) = clients.join_next().await {
        last_tokens.extend(last.ok().flatten());
    }
    let elapsed = started.elapsed().as_secs_f64();

    // Each session's last granted refresh token must still rotate.
    let mut verified = json!(null);
    if let Some(secs) = args.verify_secs {
        let until = Instant::now() + Duration::from_secs(secs);
        let (mut usable, mut unusable) = (0, Vec::new());
        for token in &last_tokens {
            let status = loop {
                let answer = gateway.refresh(token).await;
                if !matches!(answer.status, 503 | 0) || Instant::now() > until {
                    break answer.status;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            if status == 200 {
                usable += 1;
            } else {
                unusable.push(status);
            }
        }
        verified = json!({ "sessions": last_tokens.len(), "usable": usable, "unusable_statuses": unusable });
    }

    let observed = gateway.observed.lock().await;
    let mut routes = BTreeMap::<&str, Value>::new();
    let mut by_route: BTreeMap<&str, (Vec<u64>, BTreeMap<String, usize>)> = BTreeMap::new();
    for ((route, status), latencies) in &observed.latencies {
        let entry = by_route.entry(route).or_default();
        entry.0.extend(latencies);
        *entry.1.entry(status.to_string()).or_default() += latencies.len();
    }
    for (route, (mut latencies, statuses)) in by_route {
        latencies.sort_unstable();
        routes.insert(
            route,
            json!({
                "requests": latencies.len(),
                "per_sec": (latencies.len() as f64 / elapsed * 10.0).round() / 10.0,
                "p50_ms": percentile(&latencies, 50.0) as f64 / 1000.0,
                "p99_ms": percentile(&latencies, 99.0) as f64 / 1000.0,
                "max_ms": latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
                "statuses": statuses,
            }),
        );
    }
    let mut overhead = observed.overhead_us.clone();
    overhead.sort_unstable();
    let total: usize = routes.values().filter_map(|r| r["requests"].as_u64()).sum::<u64>() as usize;
    let mut report = json!({
        "clients": args.clients,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "requests": total,
        "per_sec": (total as f64 / elapsed * 10.0).round() / 10.0,
        "routes": routes,
        "gateway_overhead_us": { "p50": percentile(&overhead, 50.0), "p99": percentile(&overhead, 99.0), "max": overhead.last() },
        "lost_sessions_during_load": observed.lost_sessions,
        "refusals_without_retry_after": observed.refusals_without_retry_after,
        "verified_afterwards": verified,
    });
    if let Some(timeline) = &observed.timeline {
        report["timeline"] = json!(timeline);
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    std::process::ExitCode::SUCCESS
}
