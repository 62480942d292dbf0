//! `authctl dpop`: the client's side of DPoP (RFC 9449, docs/dpop.md) for trying a bound
//! session by hand with curl: a key file, its thumbprint, and one proof per request.
//! Nothing here talks to AWS; the service only ever checks proofs.

use std::io::{Read, Write};
use std::path::Path;

use tokenauth::rules::dpop::ProofKey;

/// The PEM label of a PKCS #8 private key (RFC 7468 §10), as `openssl genpkey` writes it.
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// Writes a new P-256 key to `out` as PKCS #8 PEM, readable by its owner only, and returns
/// its thumbprint. An existing file is never replaced: a session bound to the old key would
/// be lost with it.
pub fn keygen(out: &Path) -> Result<String, String> {
    let key = ProofKey::generate().map_err(str::to_owned)?;
    let der = key.to_pkcs8().map_err(str::to_owned)?;
    let pem = pem::encode(&pem::Pem::new(PKCS8_LABEL, der));
    let mut file = create_private(out)?;
    file.write_all(pem.as_bytes()).map_err(|e| format!("could not write {}: {e}", out.display()))?;
    Ok(key.thumbprint())
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| refuse(path, &e))
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| refuse(path, &e))
}

fn refuse(path: &Path, error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::AlreadyExists {
        format!(
            "{} exists: not replaced (a session bound to that key would be lost); choose another --out",
            path.display()
        )
    } else {
        format!("could not create {}: {error}", path.display())
    }
}

/// The key of a file [`keygen`] wrote (or any P-256 PKCS #8 PEM, as `openssl genpkey
/// -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes).
pub fn read_key(path: &Path) -> Result<ProofKey, String> {
    let text = std::fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let block = pem::parse(&text).map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
    if block.tag() != PKCS8_LABEL {
        return Err(format!(
            "{} holds a \"{}\", not a PKCS #8 \"{PKCS8_LABEL}\" (authctl dpop keygen writes one)",
            path.display(),
            block.tag()
        ));
    }
    ProofKey::from_pkcs8(block.contents()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the access token a proof's `ath` hashes comes from.
pub enum AccessToken {
    /// Not a protected resource (login, refresh): no `ath`.
    None,
    /// Given on the command line.
    Given(String),
    /// Read from a file, or from standard input for `-`: a token in argv is visible to
    /// every user of the machine.
    File(std::path::PathBuf),
}

impl AccessToken {
    fn read(self) -> Result<Option<String>, String> {
        let raw = match self {
            Self::None => return Ok(None),
            Self::Given(token) => token,
            Self::File(path) if path.as_os_str() == "-" => {
                let mut input = String::new();
                std::io::stdin().read_to_string(&mut input).map_err(|e| format!("could not read stdin: {e}"))?;
                input
            }
            Self::File(path) => {
                std::fs::read_to_string(&path).map_err(|e| format!("could not read {}: {e}", path.display()))?
            }
        };
        let token = raw.trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err("the access token must be one token, without spaces".to_owned());
        }
        Ok(Some(token.to_owned()))
    }
}

/// One proof for `method` `url` made at `now` with a fresh `jti`: the value of a `DPoP`
/// header. The URL must be the one the request goes to, as the client calls it; its query
/// and fragment are left out (RFC 9449 §4.2).
pub fn proof(key: &ProofKey, method: &str, url: &str, access_token: AccessToken, now: u64) -> Result<String, String> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("--method must be an HTTP method in capitals (GET, POST), not {method:?}"));
    }
    let mut htu = url::Url::parse(url).map_err(|e| format!("--url must be an absolute URL ({e})"))?;
    if !matches!(htu.scheme(), "http" | "https") || htu.host().is_none() {
        return Err("--url must be an http or https URL with a host".to_owned());
    }
    htu.set_query(None);
    htu.set_fragment(None);
    let token = access_token.read()?;
    key.proof(method, htu.as_str(), now, token.as_deref()).map_err(str::to_owned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tokenauth::rules::dpop::{verify_proof, ProofRejection, ProofRequest, ProofWindow};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "http://127.0.0.1:3000/api/whoami";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";

    fn window() -> ProofWindow {
        ProofWindow { now: NOW, max_age: 60, leeway: 5 }
    }

    fn key_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.pem");
        (dir, path)
    }

    #[test]
    fn the_printed_proof_verifies_for_its_request_and_names_the_keys_thumbprint() {
        let (_dir, path) = key_file();
        let jkt = keygen(&path).unwrap();
        let key = read_key(&path).unwrap();

        let printed = proof(&key, "GET", URL, AccessToken::Given(TOKEN.to_owned()), NOW).unwrap();
        let request = ProofRequest {
            method: "GET",
            url: URL,
            access_token_sha256: Some(tokenauth::rules::dpop::access_token_sha256(TOKEN)),
        };
        let checked = verify_proof(&printed, &request, &window(), Some(&jkt)).unwrap();
        assert_eq!(checked.jkt, jkt);
        assert_eq!(checked.iat, NOW);

        // Another access token than the one its ath hashes, another method: refused.
        let other = ProofRequest {
            method: "GET",
            url: URL,
            access_token_sha256: Some(tokenauth::rules::dpop::access_token_sha256("another.access.token")),
        };
        assert_eq!(verify_proof(&printed, &other, &window(), None), Err(ProofRejection::WrongTokenHash));
        let post = ProofRequest {
            method: "POST",
            url: URL,
            access_token_sha256: Some(tokenauth::rules::dpop::access_token_sha256(TOKEN)),
        };
        assert_eq!(verify_proof(&printed, &post, &window(), None), Err(ProofRejection::WrongMethod));
    }

    #[test]
    fn each_proof_has_a_fresh_jti() {
        let key = ProofKey::generate().unwrap();
        let url = "http://127.0.0.1:3000/auth/refresh";
        let request = ProofRequest { method: "POST", url, access_token_sha256: None };
        let first = verify_proof(&proof(&key, "POST", url, AccessToken::None, NOW).unwrap(), &request, &window(), None);
        let second =
            verify_proof(&proof(&key, "POST", url, AccessToken::None, NOW).unwrap(), &request, &window(), None);
        assert_ne!(first.unwrap().jti, second.unwrap().jti);
    }

    #[test]
    fn the_query_and_fragment_are_left_out_of_htu() {
        let key = ProofKey::generate().unwrap();
        let printed = proof(&key, "GET", "http://127.0.0.1:3000/api/whoami?x=1#top", AccessToken::None, NOW).unwrap();
        let payload = printed.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["htu"], URL);
        assert_eq!(claims["htm"], "GET");
        assert!(claims.get("ath").is_none(), "{claims}");
    }

    #[test]
    fn the_access_token_can_come_from_a_file() {
        let (dir, path) = key_file();
        keygen(&path).unwrap();
        let key = read_key(&path).unwrap();
        let token_file = dir.path().join("access-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let printed = proof(&key, "GET", URL, AccessToken::File(token_file), NOW).unwrap();
        let request = ProofRequest {
            method: "GET",
            url: URL,
            access_token_sha256: Some(tokenauth::rules::dpop::access_token_sha256(TOKEN)),
        };
        verify_proof(&printed, &request, &window(), None).unwrap();

        let blank = dir.path().join("blank");
        std::fs::write(&blank, "\n").unwrap();
        let error = proof(&key, "GET", URL, AccessToken::File(blank), NOW).unwrap_err();
        assert!(error.contains("one token"), "{error}");
    }

    #[test]
    fn a_bad_method_or_url_is_refused_with_a_clear_error() {
        let key = ProofKey::generate().unwrap();
        for (method, url, says) in [
            ("get", URL, "--method"),
            ("", URL, "--method"),
            ("GET", "/api/whoami", "--url"),
            ("GET", "ftp://127.0.0.1/api/whoami", "--url"),
        ] {
            let error = proof(&key, method, url, AccessToken::None, NOW).unwrap_err();
            assert!(error.starts_with(says), "{method} {url}: {error}");
        }
    }

    #[test]
    fn the_key_file_round_trips_and_is_readable_by_its_owner_only() {
        let (_dir, path) = key_file();
        let jkt = keygen(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        let key = read_key(&path).unwrap();
        assert_eq!(key.thumbprint(), jkt);
        // What it reads back writes the same key.
        assert_eq!(pem::parse(&text).unwrap().contents(), key.to_pkcs8().unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn keygen_refuses_to_overwrite_a_file() {
        let (_dir, path) = key_file();
        let jkt = keygen(&path).unwrap();
        let error = keygen(&path).unwrap_err();
        assert!(error.contains("not replaced"), "{error}");
        assert_eq!(read_key(&path).unwrap().thumbprint(), jkt, "the first key is still there");

        let (_other_dir, other) = key_file();
        std::fs::write(&other, "not a key").unwrap();
        assert!(keygen(&other).is_err());
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "not a key");
    }

    #[test]
    fn a_file_that_is_not_a_p256_pkcs8_key_is_refused_by_name() {
        let (dir, path) = key_file();
        std::fs::write(&path, pem::encode(&pem::Pem::new("EC PRIVATE KEY", vec![1, 2, 3]))).unwrap();
        let error = read_key(&path).unwrap_err();
        assert!(error.contains("EC PRIVATE KEY") && error.contains("keygen"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, pem::encode(&pem::Pem::new(PKCS8_LABEL, vec![1, 2, 3]))).unwrap();
        assert!(read_key(&garbage).unwrap_err().contains("P-256"));
        assert!(read_key(&dir.path().join("missing.pem")).is_err());
    }
}
