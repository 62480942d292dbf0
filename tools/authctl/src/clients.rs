//! `authctl clients`: the client registry from the command line, a thin layer over
//! [`ClientRegistry`]. Every command answers a readable text, or with `--json` one JSON
//! document for scripts. A new secret is printed once (add, rotate-secret); nothing prints
//! a stored hash: `show` and `list` give the number and dates of the secrets only.

use std::path::PathBuf;

use clap::{ArgGroup, Subcommand};
use serde_json::{json, Value};
use tokenauth::rules::clients::{ClientRecord, ClientSpec, ClientType, GrantType};
use tokenauth::services::clients::{ClientRegistry, Registered, RegistryError};

use crate::{Failure, EXIT_EXISTS, EXIT_NOT_FOUND};

/// How long a rotated-out secret keeps working by default: a day, time enough to roll the
/// new one out to every instance of a service.
pub const DEFAULT_PREVIOUS_VALID_FOR_SECS: u64 = 86_400;

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Register a client. A confidential client without --jwks gets a secret, shown once.
    #[command(group(ArgGroup::new("kind").required(true).args(["public", "confidential"])))]
    Add {
        /// The client id (1-128 of A-Z a-z 0-9 . _ - :).
        #[arg(long)]
        id: String,
        /// An app on a user's device: no credentials (default grant refresh_token).
        #[arg(long)]
        public: bool,
        /// A service: a secret, or keys with --jwks (default grant client_credentials).
        #[arg(long)]
        confidential: bool,
        /// A grant it may use, by its RFC name (repeat for several): refresh_token,
        /// client_credentials, urn:ietf:params:oauth:grant-type:token-exchange.
        #[arg(long = "grant", value_parser = parse_grant)]
        grants: Vec<GrantType>,
        /// Space-separated scopes it may be given.
        #[arg(long, default_value = "")]
        scope: String,
        /// An API (`aud`) it may ask tokens for (repeat for several; the first is its default).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// A JWKS file with its public keys for private_key_jwt (EC P-256 or RSA >= 2048 bits).
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Lifetime of its access tokens, seconds (default ACCESS_TOKEN_TTL_SECS).
        #[arg(long)]
        token_ttl: Option<u64>,
        /// Print {"client_id", "client_secret"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every registered client.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One client: type, grants, scopes, audiences, status, and its secrets' dates.
    Show {
        /// The client id.
        id: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Disable a client: nothing more is issued to it, its sessions cannot refresh, and its
    /// live access tokens are refused within the authorizer's stated lag.
    Disable {
        /// The client id.
        id: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Give a confidential client a new secret (printed once); the current one keeps
    /// working for --previous-valid-for seconds.
    RotateSecret {
        /// The client id.
        id: String,
        /// How long the current secret stays valid, seconds (0: it ends now).
        #[arg(long, default_value_t = DEFAULT_PREVIOUS_VALID_FOR_SECS)]
        previous_valid_for: u64,
        /// Print {"client_id", "client_secret", "previous_valid_until"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl ClientsCommand {
    /// The client id the command writes (its read before the clock check), if it writes.
    pub fn writes(&self) -> Option<&str> {
        match self {
            Self::Add { id, .. } | Self::Disable { id, .. } | Self::RotateSecret { id, .. } => Some(id),
            Self::List { .. } | Self::Show { .. } => None,
        }
    }
}

fn parse_grant(name: &str) -> Result<GrantType, String> {
    GrantType::parse(name).ok_or_else(|| {
        let names: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
        format!("unknown grant {name:?}; one of: {}", names.join(", "))
    })
}

/// Runs one command against `registry`.
pub async fn run(registry: &ClientRegistry, command: ClientsCommand) -> Result<String, Failure> {
    let failed = |e: RegistryError| {
        let status = match e {
            RegistryError::Exists(_) => EXIT_EXISTS,
            RegistryError::NotFound(_) => EXIT_NOT_FOUND,
            _ => 1,
        };
        Failure::with_status(e.to_string(), status)
    };
    match command {
        ClientsCommand::Add { id, public, confidential: _, grants, scope, audiences, jwks, token_ttl, json } => {
            let jwks = match jwks {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("could not read the JWKS file {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let spec = ClientSpec {
                client_id: id,
                client_type: if public { ClientType::Public } else { ClientType::Confidential },
                grants,
                scopes: crate::parse_scopes(&scope)?,
                audiences,
                jwks,
                token_ttl_secs: token_ttl,
            };
            let registered = registry.add(spec).await.map_err(failed)?;
            Ok(if json { issued_json(&registered) } else { added_text(&registered) })
        }
        ClientsCommand::List { json } => {
            let clients = registry.list().await.map_err(failed)?;
            if json {
                return Ok(Value::Array(clients.iter().map(summary).collect()).to_string());
            }
            if clients.is_empty() {
                return Ok("no clients registered".to_owned());
            }
            Ok(clients.iter().map(one_line).collect::<Vec<_>>().join("\n"))
        }
        ClientsCommand::Show { id, json } => {
            let client = registry.show(&id).await.map_err(failed)?;
            Ok(if json { summary(&client).to_string() } else { details(&client) })
        }
        ClientsCommand::Disable { id, json } => {
            let disabled = registry.disable(&id).await.map_err(failed)?;
            let client = &disabled.client;
            Ok(if json {
                json!({
                    "client_id": client.client_id,
                    "status": "disabled",
                    "disabled_at": client.disabled_at,
                    "not_before": disabled.not_before,
                })
                .to_string()
            } else {
                format!(
                    "disabled client {}: nothing more is issued to it, its sessions cannot refresh, and its tokens \
                     issued before {} are refused by the authorizer within the revocation lag",
                    client.client_id, disabled.not_before
                )
            })
        }
        ClientsCommand::RotateSecret { id, previous_valid_for, json } => {
            let rotated = registry.rotate_secret(&id, previous_valid_for).await.map_err(failed)?;
            let previous_until = rotated.client.secrets.iter().find_map(|s| s.expires_at);
            if json {
                let mut out = issued_json(&rotated);
                if let Ok(Value::Object(mut members)) = serde_json::from_str::<Value>(&out) {
                    members.insert("previous_valid_until".into(), json!(previous_until));
                    out = Value::Object(members).to_string();
                }
                return Ok(out);
            }
            let previous = match previous_until {
                Some(until) => format!("the previous secret keeps working until {until} (Unix seconds)"),
                None => "the previous secret no longer works".to_owned(),
            };
            Ok(format!("rotated the secret of client {id}; {previous}\n{}", secret_text(&rotated)))
        }
    }
}

/// `{"client_id", "client_secret"}`; no `client_secret` when none was made.
fn issued_json(registered: &Registered) -> String {
    let mut out = json!({ "client_id": registered.client.client_id });
    if let Some(secret) = &registered.secret {
        out["client_secret"] = secret.encode().into();
    }
    out.to_string()
}

fn secret_text(registered: &Registered) -> String {
    match &registered.secret {
        Some(secret) => format!(
            "client secret: {}\nThis secret is shown once and is not shown again (only its hash is stored): keep it \
             in your secret store now. `authctl clients rotate-secret {}` makes a new one.",
            secret.encode(),
            registered.client.client_id
        ),
        None => String::new(),
    }
}

fn added_text(registered: &Registered) -> String {
    let client = &registered.client;
    let credentials = match (client.client_type, &client.jwks) {
        (ClientType::Public, _) => "no credentials (public)",
        (ClientType::Confidential, Some(_)) => "private_key_jwt with the registered keys",
        (ClientType::Confidential, None) => "a client secret",
    };
    let mut text = format!("registered client {}; credentials: {credentials}", one_line(client));
    let secret = secret_text(registered);
    if !secret.is_empty() {
        text = format!("{text}\n{secret}");
    }
    text
}

fn type_name(client: &ClientRecord) -> &'static str {
    match client.client_type {
        ClientType::Public => "public",
        ClientType::Confidential => "confidential",
    }
}

fn grant_names(client: &ClientRecord) -> Vec<&'static str> {
    client.grants.iter().map(|g| g.as_str()).collect()
}

fn status_name(client: &ClientRecord) -> &'static str {
    if client.is_active() {
        "active"
    } else {
        "disabled"
    }
}

fn one_line(client: &ClientRecord) -> String {
    format!(
        "{} {} {} grants={} scopes=\"{}\" audiences={}",
        client.client_id,
        type_name(client),
        status_name(client),
        grant_names(client).join(","),
        client.scopes.join(" "),
        if client.audiences.is_empty() { "(the deployment's)".to_owned() } else { client.audiences.join(",") },
    )
}

fn details(client: &ClientRecord) -> String {
    let mut lines = vec![
        format!("client_id:  {}", client.client_id),
        format!("type:       {}", type_name(client)),
        format!("status:     {}", status_name(client)),
        format!("grants:     {}", grant_names(client).join(" ")),
        format!("scopes:     {}", client.scopes.join(" ")),
        format!("audiences:  {}", client.audiences.join(" ")),
        format!("created_at: {}", client.created_at),
    ];
    if let Some(ttl) = client.token_ttl_secs {
        lines.push(format!("token_ttl:  {ttl} s"));
    }
    if let Some(at) = client.disabled_at {
        lines.push(format!("disabled_at: {at}"));
    }
    if client.jwks.is_some() {
        lines.push("credentials: private_key_jwt (registered JWKS)".to_owned());
    }
    lines.push(format!("secrets:    {}", client.secrets.len()));
    for secret in &client.secrets {
        lines.push(match secret.expires_at {
            None => format!("  current, created {}", secret.created_at),
            Some(until) => format!("  previous, created {}, valid until {until}", secret.created_at),
        });
    }
    lines.join("\n")
}

/// A client as `show --json` and `list --json` print it: no hash, the secrets' dates only.
fn summary(client: &ClientRecord) -> Value {
    let jwks = client.jwks.as_deref().and_then(|doc| serde_json::from_str::<Value>(doc).ok());
    json!({
        "client_id": client.client_id,
        "client_type": type_name(client),
        "status": status_name(client),
        "grants": grant_names(client),
        "scopes": client.scopes,
        "audiences": client.audiences,
        "token_ttl_secs": client.token_ttl_secs,
        "created_at": client.created_at,
        "disabled_at": client.disabled_at,
        "secrets": client.secrets.iter().map(|s| json!({"created_at": s.created_at, "expires_at": s.expires_at})).collect::<Vec<_>>(),
        "jwks": jwks,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tokenauth::rules::clients::{ClientSecret, StoredSecret};

    use super::*;

    #[test]
    fn a_grant_is_named_as_the_rfc_names_it_and_anything_else_lists_the_names() {
        assert_eq!(parse_grant("client_credentials"), Ok(GrantType::ClientCredentials));
        assert_eq!(parse_grant("urn:ietf:params:oauth:grant-type:token-exchange"), Ok(GrantType::TokenExchange));
        let error = parse_grant("password").unwrap_err();
        assert!(error.contains("refresh_token") && error.contains("token-exchange"), "{error}");
    }

    #[test]
    fn show_and_list_print_the_secrets_dates_and_never_a_hash() {
        let secret = ClientSecret::new();
        let mut client = ClientRecord {
            client_type: ClientType::Confidential,
            grants: vec![GrantType::ClientCredentials],
            ..ClientRecord::public("svc", vec!["read".into()], vec!["https://api".into()], 5)
        };
        client.secrets = vec![
            StoredSecret { hash: secret.hash("svc"), created_at: 7, expires_at: None },
            StoredSecret { hash: ClientSecret::new().hash("svc"), created_at: 5, expires_at: Some(90) },
        ];
        let hashes: Vec<String> = client.secrets.iter().map(|s| s.hash.clone()).collect();
        let json = summary(&client);
        assert_eq!(
            json["secrets"],
            json!([{"created_at": 7, "expires_at": null}, {"created_at": 5, "expires_at": 90}])
        );
        for printed in [json.to_string(), details(&client), one_line(&client)] {
            for hash in &hashes {
                assert!(!printed.contains(hash.as_str()), "{printed}");
            }
        }
        let registered = Registered { client, secret: Some(secret.clone()) };
        let issued: Value = serde_json::from_str(&issued_json(&registered)).unwrap();
        assert_eq!(issued, json!({"client_id": "svc", "client_secret": secret.encode()}));
        let text = added_text(&registered);
        assert!(text.contains(&secret.encode()) && text.contains("shown once"), "{text}");
        let public = Registered { client: ClientRecord::public("app", vec![], vec![], 0), secret: None };
        assert_eq!(serde_json::from_str::<Value>(&issued_json(&public)).unwrap(), json!({"client_id": "app"}));
    }
}
