//! `authctl`: the administrator's command line for tokenauth.
//!
//! Reads the same configuration as the functions (`set -a; . .local/stack.env; set +a` locally).
//! Passwords are read from standard input (never from argv, which other users can see).
//! A command that writes a security time first checks this machine's clock against AWS's
//! ([`clock`]). `authctl dpop` is a client's tool and needs neither configuration nor AWS.

mod clients;
mod clock;
mod dpop;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use clock::DateCapture;
use tokenauth::platform::audit::{self, AccountEvent};
use tokenauth::rules::keys::set::{KeyRefusal, KeyStep};
use tokenauth::rules::keys::KeyAlgorithm;
use tokenauth::rules::password;
use tokenauth::rules::password_policy::check_new_password;
use tokenauth::rules::scope::Scope;
use tokenauth::rules::token::random_id;
use tokenauth::rules::username::Username;
use tokenauth::services::keys::manager::{KeyChangeError, KeySource};
use tokenauth::services::keys::KeyManager;
use tokenauth::store::AccountChange;
use tokenauth::store::{DynamoUsers, UserRecord, UserWriteError};
use tokenauth::{Clock, Config, Revoker, SystemClock};

#[derive(Parser)]
#[command(name = "authctl", about = "Administer tokenauth users, sessions, keys and clients", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage sessions (refresh-token families).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage the client registry (docs/clients.md).
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Manage the signing key set (README: "Keys and rotation").
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A client's DPoP key and proofs, to try a session bound to a key with curl
    /// (docs/dpop.md). Needs no configuration.
    #[command(subcommand)]
    Dpop(DpopCommand),
}

#[derive(Subcommand)]
enum DpopCommand {
    /// Write a new P-256 key as PKCS #8 PEM (mode 0600) and print its thumbprint; an
    /// existing file is never replaced.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the key's RFC 7638 thumbprint: the `cnf.jkt` of the tokens bound to it.
    Thumbprint {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print one proof (a fresh jti, iat now) for one request: the value of its DPoP header.
    Proof {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
        /// The request's method, in capitals.
        #[arg(long)]
        method: String,
        /// The URL the request goes to, as the client calls it (query and fragment are left out).
        #[arg(long)]
        url: String,
        /// The access token sent with the request, hashed into the proof's ath (a protected
        /// route). Visible to other users of the machine: --access-token-file avoids that.
        #[arg(long, conflicts_with = "access_token_file")]
        access_token: Option<String>,
        /// A file holding the access token ("-" for standard input).
        #[arg(long)]
        access_token_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every key of the set: state, kid, alg, KMS key, since when.
    List,
    /// Add a key as pending (as current if the set is empty): a new key of SIGNING_KEY_KIND
    /// (a KMS key, or an envelope key pair under ENVELOPE_KEY_ID), or --key-id.
    Add {
        /// An envelope key (ES256, its private half encrypted under ENVELOPE_KEY_ID) whatever
        /// SIGNING_KEY_KIND says.
        #[arg(long, conflicts_with_all = ["key_id", "rsa", "kms"])]
        envelope: bool,
        /// A KMS-held key whatever SIGNING_KEY_KIND says.
        #[arg(long)]
        kms: bool,
        /// An RSA_2048 KMS key (RS256) instead of ECC_NIST_P256 (ES256).
        #[arg(long, conflicts_with = "key_id")]
        rsa: bool,
        /// Adopt this existing KMS key (id, ARN or alias) instead of creating one.
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Make the pending key current (the current one becomes previous), once it has been
    /// published for KEY_PUBLISH_LEAD_SECS.
    Promote {
        /// Promote before the gate opens (logged in the audit log).
        #[arg(long)]
        force: bool,
    },
    /// Retire the oldest previous key once its last token has expired; schedules its KMS
    /// key for deletion.
    Retire {
        /// Retire before the gate opens (logged in the audit log).
        #[arg(long)]
        force: bool,
    },
    /// Emergency: distrust a key now, live tokens included. A current key hands over to
    /// the pending one (a new key is added first if none is pending).
    Revoke {
        /// The key's kid.
        kid: String,
    },
    /// Perform the next due step of the schedule, if any (what the key-rotation function runs).
    Rotate,
    /// Print the JWKS document as the jwks function serves it.
    Jwks,
}

#[derive(Subcommand)]
enum SessionCommand {
    /// End every session of a user: families revoked, live access tokens denylisted.
    RevokeAll {
        /// The username.
        username: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        /// The username (normalised: trimmed, NFKC, lower-case).
        username: String,
        /// Space-separated scopes the user may be granted.
        #[arg(long, default_value = "")]
        scope: String,
    },
    /// Disable a user: further logins fail like a wrong password, and every session ends.
    Disable {
        /// The username.
        username: String,
    },
    /// Reset a user's password (read from standard input, judged by the password policy):
    /// every session of the user ends, live access tokens within the authorizer's lag.
    SetPassword {
        /// The username.
        username: String,
    },
    /// Delete a user (an erasure request): every session ends, and everything that names
    /// the person (username, password hash, devices, sessions) is erased; the username can
    /// be registered again as a new account. Repeating it finishes an erasure cut short.
    Delete {
        /// The username.
        username: String,
    },
    /// Replace a user's scopes: live sessions narrow to them at their next refresh, and
    /// live access tokens end within the authorizer's stated lag.
    SetScopes {
        /// The username.
        username: String,
        /// Space-separated scopes ("" for none).
        scopes: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Audit lines (JSON) on stderr: key changes, and whether a gate was forced.
    tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_target(true).init();
    match run(cli).await {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(Failure { message, status }) => {
            eprintln!("authctl: {message}");
            ExitCode::from(status)
        }
    }
}

/// Why a command failed, and the exit status that tells scripts which failure it was:
/// 1 in general, [`EXIT_EXISTS`] and [`EXIT_NOT_FOUND`] for the registry's two.
#[derive(Debug)]
pub struct Failure {
    message: String,
    status: u8,
}

/// `clients add` of an id already registered.
pub const EXIT_EXISTS: u8 = 3;
/// A `clients` command naming an id not registered.
pub const EXIT_NOT_FOUND: u8 = 4;

impl Failure {
    pub fn with_status(message: impl Into<String>, status: u8) -> Self {
        Self { message: message.into(), status }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::with_status(message, 1)
    }
}

async fn run(cli: Cli) -> Result<String, Failure> {
    // A client's tool: answered before the configuration is read.
    if let Command::Dpop(command) = cli.command {
        return Ok(dpop_command(command)?);
    }
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let sdk =
        tokenauth::platform::aws::sdk_config(&config.trust_roots, tokenauth::platform::aws::Credentials::DefaultChain)
            .await
            .map_err(|e| e.to_string())?;
    // Every DynamoDB response's Date is kept: the clock check reads the last one.
    let capture = DateCapture::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(capture.clone()).build(),
    );
    let users = DynamoUsers::new(dynamodb.clone(), &config.users_table);
    // Before a user change: the account read (one GetItem), then the clock check.
    let clock_checked = |name: Username| {
        let (users, capture) = (users.clone(), capture.clone());
        async move {
            in_step(&capture, || async {
                users.get(&name).await.map(drop).map_err(|e| format!("DynamoDB failed: {e}"))
            })
            .await
        }
    };
    let revoker = Revoker::new(&config, dynamodb.clone(), Arc::new(SystemClock));
    let change = |name: Username, change: AccountChange, reason: &'static str| {
        let revoker = revoker.clone();
        async move {
            revoker.change_account(&name, &change, reason, SystemClock.now()).await.map_err(|e| describe(e, &name))
        }
    };
    let command = match cli.command {
        Command::User(command) => command,
        Command::Keys(command) => {
            let manager =
                KeyManager::from_config(&config, dynamodb, aws_sdk_kms::Client::new(&sdk), Arc::new(SystemClock));
            return Ok(keys(&manager, &capture, command).await?);
        }
        Command::Dpop(command) => return Ok(dpop_command(command)?),
        Command::Clients(command) => {
            let registry = tokenauth::services::clients::ClientRegistry::from_config(
                &config,
                dynamodb.clone(),
                Arc::new(SystemClock),
            );
            if config.clients_table.is_empty() {
                return Err("CLIENTS_TABLE is not set: this deployment has no client registry".to_owned().into());
            }
            if let Some(client_id) = command.writes() {
                // A disable stamps a cut-off and a rotation an expiry: the item read, then
                // the clock check.
                let table = tokenauth::store::DynamoClients::new(dynamodb, &config.clients_table);
                in_step(&capture, || async {
                    table.get(client_id, false).await.map(drop).map_err(|e| format!("DynamoDB failed: {e}"))
                })
                .await?;
            }
            return clients::run(&registry, command).await;
        }
        Command::Session(SessionCommand::RevokeAll { username }) => {
            let name = parse_username(&username)?;
            clock_checked(name.clone()).await?;
            let changed = change(name.clone(), AccountChange::EndSessions, "revoked_by_admin").await?;
            return Ok(format!(
                "ended every session of {name} (cut-off {}; {} family record(s) revoked)",
                changed.user.not_before, changed.families_revoked
            ));
        }
    };
    match command {
        UserCommand::Add { username, scope } => {
            let name = parse_username(&username)?;
            let scopes = parse_scopes(&scope)?;
            let password = read_password()?;
            clock_checked(name.clone()).await?;
            let password_hash = tokio::task::spawn_blocking(move || password::hash(&password))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("could not hash the password: {e}"))?;
            let user = UserRecord::new(random_id(), password_hash, scopes, SystemClock.now());
            users.create(&name, &user).await.map_err(|e| describe(e, &name))?;
            Ok(format!("created user {name} (user id {})", user.user_id))
        }
        UserCommand::Disable { username } => {
            let name = parse_username(&username)?;
            clock_checked(name.clone()).await?;
            let changed = change(name.clone(), AccountChange::Disable, "disabled_by_admin").await?;
            Ok(format!(
                "disabled user {name} and ended every session (cut-off {}; {} family record(s) revoked)",
                changed.user.not_before, changed.families_revoked
            ))
        }
        UserCommand::SetPassword { username } => {
            let name = parse_username(&username)?;
            let password = read_password()?;
            check_new_password(&password, name.as_str()).map_err(|refusal| refusal.description().to_owned())?;
            clock_checked(name.clone()).await?;
            let password_hash = tokio::task::spawn_blocking(move || password::hash(&password))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("could not hash the password: {e}"))?;
            let changed = change(name.clone(), AccountChange::SetPassword(password_hash), "password_reset").await?;
            Ok(format!(
                "set the password of {name} and ended every session (cut-off {}; {} family record(s) revoked)",
                changed.user.not_before, changed.families_revoked
            ))
        }
        UserCommand::Delete { username } => {
            let name = parse_username(&username)?;
            clock_checked(name.clone()).await?;
            let changed = change(name.clone(), AccountChange::Delete, "account_deleted").await?;
            let user_id = changed.user.user_id;
            revoker.erase_account(&name, &user_id).await.map_err(|e| describe(e, &name))?;
            audit::account(AccountEvent::AccountDeleted, &user_id, "-", None);
            Ok(format!("deleted user {name} (user id {user_id}): every session ended, the account erased"))
        }
        UserCommand::SetScopes { username, scopes } => {
            let name = parse_username(&username)?;
            let scopes = parse_scopes(&scopes)?;
            clock_checked(name.clone()).await?;
            let changed = change(name.clone(), AccountChange::SetScopes(scopes.clone()), "scopes_changed").await?;
            Ok(format!(
                "set scopes of {name} to \"{}\"; sessions narrow at their next refresh, live access tokens end (cut-off {})",
                scopes.join(" "),
                changed.user.not_before
            ))
        }
    }
}

async fn keys(manager: &KeyManager, capture: &DateCapture, command: KeysCommand) -> Result<String, String> {
    let done = |step: KeyStep| step.to_string();
    if !matches!(command, KeysCommand::List | KeysCommand::Jwks) {
        // Every other step stamps the set or passes a gate: the set read, then the clock check.
        in_step(capture, || async { manager.list().await.map(drop).map_err(|e| e.to_string()) }).await?;
    }
    match command {
        KeysCommand::List => {
            let set = manager.list().await.map_err(|e| e.to_string())?;
            let lines: Vec<String> = set.entries.iter().map(ToString::to_string).collect();
            Ok(format!("key set version {}\n{}", set.version, lines.join("\n")))
        }
        KeysCommand::Add { envelope, kms, rsa, key_id } => {
            let source = match (key_id, envelope, kms || rsa) {
                (Some(id), _, _) => KeySource::Adopt(id),
                (None, true, _) => KeySource::Envelope,
                (None, false, true) => KeySource::Create(if rsa { KeyAlgorithm::RS256 } else { KeyAlgorithm::ES256 }),
                (None, false, false) => manager.next_key_source(&manager.list().await.map_err(|e| e.to_string())?),
            };
            manager.add(source).await.map(done).map_err(|e| e.to_string())
        }
        KeysCommand::Promote { force } => manager.promote(force).await.map(done).map_err(|e| e.to_string()),
        KeysCommand::Retire { force } => manager.retire(force).await.map(done).map_err(|e| e.to_string()),
        KeysCommand::Revoke { kid } => match manager.revoke(&kid).await {
            Err(KeyChangeError::Refused(KeyRefusal::NoPending(_))) => {
                let set = manager.list().await.map_err(|e| e.to_string())?;
                let added = manager.add(manager.next_key_source(&set)).await.map_err(|e| e.to_string())?;
                let revoked = manager.revoke(&kid).await.map_err(|e| e.to_string())?;
                Ok(format!("{}\n{}", done(added), done(revoked)))
            }
            outcome => outcome.map(done).map_err(|e| e.to_string()),
        },
        KeysCommand::Rotate => match manager.rotate().await.map_err(|e| e.to_string())? {
            Some(step) => Ok(done(step)),
            None => Ok("nothing is due".to_owned()),
        },
        KeysCommand::Jwks => {
            let set = manager.list().await.map_err(|e| e.to_string())?;
            Ok(tokenauth::services::discovery::jwks(&set).map_err(|e| e.to_string())?.body)
        }
    }
}

fn dpop_command(command: DpopCommand) -> Result<String, String> {
    match command {
        DpopCommand::Keygen { out } => {
            let jkt = dpop::keygen(&out)?;
            Ok(format!("wrote a new P-256 DPoP key to {} (thumbprint {jkt})", out.display()))
        }
        DpopCommand::Thumbprint { key } => Ok(dpop::read_key(&key)?.thumbprint()),
        DpopCommand::Proof { key, method, url, access_token, access_token_file } => {
            let token = match (access_token, access_token_file) {
                (Some(token), _) => dpop::AccessToken::Given(token),
                (None, Some(path)) => dpop::AccessToken::File(path),
                (None, None) => dpop::AccessToken::None,
            };
            dpop::proof(&dpop::read_key(&key)?, &method, &url, token, SystemClock.now())
        }
    }
}

/// Refuses unless the response to `read` shows this machine's clock within
/// [`clock::MAX_SKEW`] of AWS's. A reading that cannot tell (a slow round trip, as a
/// DynamoDB Local just started may take) is taken again, up to three times.
async fn in_step<F, R>(capture: &DateCapture, read: F) -> Result<(), String>
where
    F: Fn() -> R,
    R: std::future::Future<Output = Result<(), String>>,
{
    let mut attempts = 0;
    loop {
        read().await?;
        attempts += 1;
        match clock::judge(&capture.last()?, clock::MAX_SKEW) {
            Ok(()) => return Ok(()),
            Err(refusal) if refusal.certain || attempts == 3 => return Err(refusal.message),
            Err(_) => {}
        }
    }
}

fn parse_username(raw: &str) -> Result<Username, String> {
    Username::normalise(raw).ok_or_else(|| {
        "username must be 1-64 characters without spaces, control characters or invisible ones (zero-width, \
             soft hyphen, word joiner, format, private-use or unassigned characters)"
            .to_owned()
    })
}

fn parse_scopes(raw: &str) -> Result<Vec<String>, String> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let scope = Scope::parse(raw.trim())
        .map_err(|_| "scopes must be RFC 6749 scope tokens separated by single spaces".to_owned())?;
    Ok(scope.tokens().map(str::to_owned).collect())
}

/// One line from stdin, without its line ending; without echo on a terminal.
fn read_password() -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").map_err(|e| e.to_string())?
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| format!("could not read the password from stdin: {e}"))?;
        let line = input.lines().next().unwrap_or_default();
        line.to_owned()
    };
    if password.is_empty() {
        return Err("the password must not be empty".to_owned());
    }
    if password.len() > password::MAX_PASSWORD_BYTES {
        return Err(format!("the password must be at most {} bytes", password::MAX_PASSWORD_BYTES));
    }
    Ok(password)
}

fn describe(error: UserWriteError, name: &Username) -> String {
    match error {
        UserWriteError::AlreadyExists => format!("user {name} already exists"),
        UserWriteError::NotFound => format!("no user {name}"),
        UserWriteError::Dependency(e) => format!("DynamoDB failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_add_refuses_a_username_with_an_invisible_character_with_a_clear_error() {
        for raw in ["al\u{200B}ice", "al\u{00AD}ice", "al\u{2060}ice"] {
            let error = parse_username(raw).expect_err(raw);
            assert!(error.contains("invisible"), "{error}");
        }
        assert_eq!(parse_username(" Alice ").map(|u| u.as_str().to_owned()), Ok("alice".to_owned()));
    }
}
