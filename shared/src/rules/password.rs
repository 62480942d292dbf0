//! Password hashing: argon2id with the OWASP parameters (m = 19 456 KiB, t = 2, p = 1),
//! stored as a PHC string.
//!
//! Login for an unknown user verifies against [`DUMMY_HASH`], a real hash with the same
//! parameters, so it costs what a wrong password costs and timing does not reveal which
//! usernames exist.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB, 2 iterations, 1 lane.
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

/// A hash of a password nobody knows, with the current parameters (checked by a test).
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXktc2FsdC1ub3QtYS11c2Vy$xJAjlfPGvw2UN8zbDMhBJ4LCnAIujH7BdRvt8/KsCtk";

/// Longest accepted password, in bytes (argon2 accepts more; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's limits.
    #[allow(clippy::expect_used)]
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password with a fresh random salt. CPU-bound: call off the async runtime.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&crate::rules::token::random_bytes::<16>())?;
    Ok(argon2().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Verifies `password` against a stored PHC string. A malformed hash verifies nothing.
/// CPU-bound: call off the async runtime. Comparison is constant-time inside argon2.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => {
            // Still spend the time, so a corrupt record is not a timing oracle either.
            let _ = verify_dummy(password);
            false
        }
    }
}

/// Runs a full verification against [`DUMMY_HASH`]; always false in practice.
pub fn verify_dummy(password: &str) -> bool {
    verify(password, DUMMY_HASH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_the_owasp_argon2id_parameters() {
        let phc = hash("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
    }

    #[test]
    fn dummy_hash_costs_what_a_real_hash_costs() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("dummy hash parses");
        let real = hash("x").expect("hash");
        let real = PasswordHash::new(&real).expect("parses");
        assert_eq!(parsed.algorithm, real.algorithm);
        assert_eq!(parsed.version, real.version);
        assert_eq!(parsed.params, real.params);
        assert_eq!(parsed.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn malformed_stored_hash_verifies_nothing() {
        assert!(!verify("anything", "not a phc string"));
    }
}
