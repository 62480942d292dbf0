//! `gateway`: serves the template's HTTP API on 127.0.0.1:3000 in front of `cargo lambda
//! watch`. `--print-routes` prints what it read from the template, as JSON, and exits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gateway::gateway::{Gateway, Timeouts};
use sam_template::Template;

#[derive(Parser)]
#[command(about = "The template's HTTP API, routes and Lambda authorizer, in front of cargo lambda watch")]
struct Args {
    /// The SAM template whose HttpApi is served.
    #[arg(long, default_value = "infra/template.yaml")]
    template: PathBuf,
    /// Where to listen (loopback only: this is a development tool).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The Lambda Invoke API of `cargo lambda watch`.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    lambda_url: String,
    /// A template parameter, as `sam deploy --parameter-overrides` takes it (repeatable).
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = parse_parameter)]
    parameters: Vec<(String, String)>,
    /// Seconds a function may take (API Gateway's HTTP API limit is 30).
    #[arg(long, default_value_t = 30)]
    integration_timeout_secs: u64,
    /// Print the routes and authorizers read from the template as JSON, and exit.
    #[arg(long)]
    print_routes: bool,
}

fn parse_parameter(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{raw}: expected NAME=VALUE"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let overrides: BTreeMap<String, String> = args.parameters.into_iter().collect();
    let api = match Template::load(&args.template, &overrides).and_then(|template| template.http_api()) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("gateway: {}: {e}", args.template.display());
            return std::process::ExitCode::from(2);
        }
    };
    if args.print_routes {
        println!("{}", serde_json::to_string_pretty(&api).unwrap_or_default());
        return std::process::ExitCode::SUCCESS;
    }
    if !args.listen.ip().is_loopback() {
        eprintln!("gateway: {} is not a loopback address; this gateway is for local development only", args.listen);
        return std::process::ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "gateway: {} is taken by another process (a gateway of an earlier `make dev`? `make stack-down` stops it); \
                 choose another port with GATEWAY_PORT=3001 make dev",
                args.listen
            );
            return std::process::ExitCode::from(3);
        }
        Err(e) => {
            eprintln!("gateway: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(3);
        }
    };
    let timeouts = Timeouts { integration: Duration::from_secs(args.integration_timeout_secs), ..Timeouts::default() };
    let gateway = Arc::new(Gateway::new(api, &args.lambda_url, timeouts));
    for route in &gateway.api().routes {
        let guard = match &route.authorizer {
            Some(name) => {
                let a = &gateway.api().authorizers[name];
                format!(
                    "authorizer {name} ({}; cache {} s on {})",
                    a.function,
                    a.result_ttl_secs,
                    a.identity_sources.join(", ")
                )
            }
            None => "no authorizer".to_owned(),
        };
        eprintln!("gateway: {:<45} -> {:<10} {guard}", route.key(), route.function);
    }
    eprintln!("gateway: listening on http://{} (functions at {})", args.listen, args.lambda_url);

    gateway::gateway::serve(listener, gateway).await
}
