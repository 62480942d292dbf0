//! A function binary run as Lambda runs it: a minimal Lambda Runtime API on 127.0.0.1 hands
//! it events one at a time and takes its answers, with the variables Lambda sets, and its
//! stdout (where Lambda's logs and EMF metrics go) is captured. The project's one Runtime
//! API stub: the tests run functions on it, and `make coldstart` times cold starts on it
//! (the `runtime-stub` binary, `src/bin/runtime_stub.rs`).

use std::collections::VecDeque;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A function binary of this build (`cargo build --workspace` puts them beside the tests).
pub fn function_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(path.is_file(), "{} is not built (make test builds every binary first)", path.display());
    path
}

/// What one run of a function gave back.
#[derive(Debug)]
pub struct LambdaRun {
    /// The answer to each event, in order (the response body, or the error document).
    pub answers: Vec<Value>,
    /// Every line the function wrote to stdout.
    pub stdout: Vec<String>,
    /// From the start of the process to its first answer: the cold start, as Lambda's
    /// INIT plus the first invocation.
    pub first_answer: Duration,
}

impl LambdaRun {
    /// The EMF documents among the stdout lines.
    pub fn emf(&self) -> Vec<Value> {
        self.stdout
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect()
    }
}

/// Runs the function binary `name` of this build with `env` (on top of nothing but PATH
/// and what Lambda sets) and hands it `events` one by one.
pub async fn run_function(name: &str, env: &[(String, String)], events: Vec<Value>) -> LambdaRun {
    let events = events.iter().map(Value::to_string).collect();
    run_binary(&function_binary(name), name, env, events, None).await
}

/// [`run_function`] for any `binary`, with each event's JSON text handed over as it is
/// (members in the order written). With `dynamodb_item`, the stub stands in for
/// DynamoDB too (the function's `AWS_ENDPOINT_URL_DYNAMODB` points at it) and answers at
/// once: `GetItem` with that item (DynamoDB's JSON), any other call with nothing found,
/// which takes DynamoDB Local's own latency out of a measurement.
pub async fn run_binary(
    binary: &Path,
    name: &str,
    env: &[(String, String)],
    events: Vec<String>,
    dynamodb_item: Option<Value>,
) -> LambdaRun {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if dynamodb_item.is_some() {
        command.env("AWS_ENDPOINT_URL_DYNAMODB", format!("http://127.0.0.1:{port}"));
    }
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });

    let total = events.len();
    let pending = Arc::new(Mutex::new(events.into_iter().enumerate().collect::<VecDeque<_>>()));
    let answers = Arc::new(Mutex::new(vec![Value::Null; total]));
    let done = Arc::new(tokio::sync::Notify::new());
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let first_answer = Arc::new(Mutex::new(None::<Instant>));
    let dynamodb_item = Arc::new(dynamodb_item);
    let server = {
        let (pending, answers, done, answered) = (pending.clone(), answers.clone(), done.clone(), answered.clone());
        let (first_answer, dynamodb_item) = (first_answer.clone(), dynamodb_item.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let (pending, answers, done, answered) =
                    (pending.clone(), answers.clone(), done.clone(), answered.clone());
                let (first_answer, dynamodb_item) = (first_answer.clone(), dynamodb_item.clone());
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut request_line = String::new();
                        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0usize;
                        let mut amz_target = String::new();
                        loop {
                            let mut header = String::new();
                            read.read_line(&mut header).await.unwrap();
                            let header = header.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = header.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    length = v.trim().parse().unwrap_or(0);
                                } else if k.eq_ignore_ascii_case("x-amz-target") {
                                    v.trim().clone_into(&mut amz_target);
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        read.read_exact(&mut body).await.unwrap();
                        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                        if let (Some(item), "/", true) =
                            (dynamodb_item.as_ref(), path.as_str(), amz_target.starts_with("DynamoDB_"))
                        {
                            // The DynamoDB stand-in: the item for GetItem, nothing for the rest.
                            let body = if amz_target.ends_with(".GetItem") {
                                serde_json::json!({ "Item": item }).to_string()
                            } else {
                                r#"{"Count":0,"Items":[],"ScannedCount":0}"#.to_owned()
                            };
                            let response = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            write.write_all(response.as_bytes()).await.unwrap();
                        } else if path.ends_with("/invocation/next") {
                            let next = pending.lock().unwrap().pop_front();
                            let Some((index, event)) = next else {
                                // No more events: the function waits here until it is stopped.
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            };
                            let body = event;
                            let deadline =
                                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                                    + 30_000;
                            let response = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 lambda-runtime-aws-request-id: request-{index}\r\n\
                                 lambda-runtime-deadline-ms: {deadline}\r\n\
                                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:test\r\n\
                                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            write.write_all(response.as_bytes()).await.unwrap();
                        } else {
                            // .../invocation/request-N/response or /error
                            let index: usize = path
                                .split('/')
                                .find_map(|p| p.strip_prefix("request-"))
                                .and_then(|n| n.parse().ok())
                                .unwrap_or(usize::MAX);
                            let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            if let Some(slot) = answers.lock().unwrap().get_mut(index) {
                                *slot = answer;
                            }
                            first_answer.lock().unwrap().get_or_insert_with(Instant::now);
                            write.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").await.unwrap();
                            if answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == total {
                                done.notify_one();
                            }
                        }
                    }
                });
            }
        })
    };
    let finished = tokio::time::timeout(Duration::from_secs(60), done.notified()).await;
    // Let the last lines reach stdout, then stop the function.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let text = reader.join().unwrap();
    assert!(finished.is_ok(), "{name} did not answer every event; stdout:\n{text}");
    let answers = answers.lock().unwrap().clone();
    let first_answer = first_answer.lock().unwrap().map(|at| at - started).unwrap_or_default();
    LambdaRun { answers, stdout: text.lines().map(str::to_owned).collect(), first_answer }
}

/// The local stack's variables, as the functions get them (`.local/*.env` through `make test`).
pub fn stack_environment(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    crate::stack_required("the stack's variables");
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_")
                || k.ends_with("_TABLE")
                || k.starts_with("TOKEN_")
                || k.starts_with("AUTHORIZER_")
                || k.starts_with("KEY")
                || k == "SEALING_KEY_ID"
                || k.ends_with("_PER_SOURCE")
        })
        .filter(|(k, _)| !k.starts_with("AWS_LAMBDA_"))
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .collect();
    env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}
