//! `runtime-stub [--name NAME] [--dynamodb-item FILE] BINARY EVENT_FILE...`: runs a function
//! binary as Lambda runs it, on the tests' Lambda Runtime API stub
//! (`tokenauth_tests::runtime`), hands it the events one by one and prints one JSON line:
//! `first_answer_ms` (process start to first answer) and the `answers`. The function's
//! configuration is this process's environment, so the caller chooses it.
//! `--dynamodb-item` makes the stub stand in for DynamoDB as well (`GetItem` answers that
//! item, anything else finds nothing). `make coldstart` (`infra/local/coldstart.py`) times
//! cold starts with it. Loopback only.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use tokenauth_tests::runtime::run_binary;

const USAGE: &str = "usage: runtime-stub [--name NAME] [--dynamodb-item FILE] BINARY EVENT_FILE...";

struct Args {
    name: String,
    dynamodb_item: Option<PathBuf>,
    binary: PathBuf,
    events: Vec<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut name, mut dynamodb_item, mut positional) = ("function".to_owned(), None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--name" => name = args.next().ok_or("--name needs a value")?,
            "--dynamodb-item" => dynamodb_item = Some(args.next().ok_or("--dynamodb-item needs a file")?.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    if positional.len() < 2 {
        return Err("a binary and at least one event file".to_owned());
    }
    let binary = positional.remove(0);
    Ok(Args { name, dynamodb_item, binary, events: positional })
}

/// A JSON file's text, as it is (an event's members stay in the order written).
fn read_json(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str::<Value>(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    Ok(text)
}

/// The events' texts and the DynamoDB item, read.
fn inputs(args: &Args) -> Result<(Vec<String>, Option<Value>), String> {
    let events = args.events.iter().map(read_json).collect::<Result<_, _>>()?;
    let item = args.dynamodb_item.as_ref().map(read_json).transpose()?;
    Ok((events, item.map(|text| serde_json::from_str(&text)).transpose().map_err(|e| e.to_string())?))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("runtime-stub: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (events, item) = match inputs(&args) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("runtime-stub: {e}");
            return ExitCode::from(2);
        }
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let run = run_binary(&args.binary, &args.name, &env, events, item).await;
    let first_answer_ms = run.first_answer.as_secs_f64() * 1000.0;
    println!("{}", json!({ "first_answer_ms": first_answer_ms, "answers": run.answers }));
    ExitCode::SUCCESS
}
