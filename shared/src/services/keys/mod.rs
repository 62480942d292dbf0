//! Keys with I/O: the key set as a trust root ([`AuthenticatedKeys`]: used only if its
//! signature verifies), the key set at run time ([`KeyRing`] keeps a verifier's keys in step with
//! it, [`KeySetSigner`] signs with its current key), KMS ([`KmsSigner`]: the private key never
//! leaves KMS; we hash `header.payload` ourselves and send only the digest, so the claims
//! never travel to KMS either), envelope keys ([`envelope`]: made and decrypted by KMS,
//! signing locally), the changes to the set ([`KeyManager`]) and the sealing
//! secret of refresh-token successors ([`sealing`]). The rules they apply are in
//! [`crate::rules::keys`].

pub mod authenticated;
pub mod envelope;
mod kms;
pub mod live;
pub mod manager;
pub mod sealing;

pub use authenticated::AuthenticatedKeys;
pub use envelope::EnvelopeSigner;
pub use kms::{fetch_trusted_key, KmsSigner};
pub use live::{CurrentKey, KeyRing, KeySetSigner};
pub use manager::KeyManager;
