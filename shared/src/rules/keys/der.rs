//! The DER we read: SubjectPublicKeyInfo (what `kms:GetPublicKey` returns) for P-256 and
//! RSA keys, and the DER ECDSA signature KMS answers to `kms:Sign`, converted to JOSE's
//! fixed-width `r || s` (RFC 7518 §3.4). One strict element reader serves all three.

use super::jwk::{EcPublicJwk, RsaPublicJwk};

/// Why a DER ECDSA signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerSignatureError {
    /// Not `SEQUENCE { INTEGER r, INTEGER s }` in strict DER.
    #[error("malformed DER ECDSA signature")]
    Malformed,
    /// r or s does not fit the curve's 32 bytes, or is zero.
    #[error("ECDSA integer out of range for P-256")]
    OutOfRange,
}

/// Converts a DER `Ecdsa-Sig-Value` (as KMS returns it) to JOSE's fixed-width `r || s`
/// (RFC 7518 §3.4): each integer left-padded with zeros to 32 bytes, its DER sign byte
/// (a leading 0x00 added when the high bit is set) dropped.
pub fn der_to_jose_es256(der: &[u8]) -> Result<Vec<u8>, DerSignatureError> {
    const WIDTH: usize = 32;
    let (body, rest) = read_element(der, 0x30).ok_or(DerSignatureError::Malformed)?;
    if !rest.is_empty() {
        return Err(DerSignatureError::Malformed);
    }
    let (r, rest) = read_element(body, 0x02).ok_or(DerSignatureError::Malformed)?;
    let (s, rest) = read_element(rest, 0x02).ok_or(DerSignatureError::Malformed)?;
    if !rest.is_empty() {
        return Err(DerSignatureError::Malformed);
    }
    let mut out = vec![0u8; 2 * WIDTH];
    for (i, int) in [r, s].into_iter().enumerate() {
        let magnitude = unsigned_magnitude(int)?;
        if magnitude.len() > WIDTH || magnitude.is_empty() {
            return Err(DerSignatureError::OutOfRange);
        }
        let end = (i + 1) * WIDTH;
        out[end - magnitude.len()..end].copy_from_slice(magnitude);
    }
    Ok(out)
}

/// The magnitude of a non-negative, minimally encoded DER INTEGER (leading 0x00 sign byte
/// removed). Negative or non-minimal encodings and zero are refused.
fn unsigned_magnitude(int: &[u8]) -> Result<&[u8], DerSignatureError> {
    match int {
        [] => Err(DerSignatureError::Malformed),
        [first, ..] if first & 0x80 != 0 => Err(DerSignatureError::Malformed), // negative
        [0x00] => Err(DerSignatureError::OutOfRange),                          // zero
        [0x00, second, ..] if second & 0x80 == 0 => Err(DerSignatureError::Malformed), // non-minimal
        [0x00, rest @ ..] => Ok(rest),
        _ => Ok(int),
    }
}

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) up to the
/// BIT STRING holding the 65-byte uncompressed point. KMS always answers this form.
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// rsaEncryption AlgorithmIdentifier: SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }.
const RSA_ALGORITHM_ID: [u8; 15] =
    [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// Reads the point out of a DER SubjectPublicKeyInfo of a P-256 key.
pub fn p256_spki_to_jwk(der: &[u8]) -> Result<EcPublicJwk, &'static str> {
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..]).ok_or("not a P-256 SubjectPublicKeyInfo")?;
    EcPublicJwk::from_uncompressed_point(point)
}

/// The SubjectPublicKeyInfo of a P-256 point given as its two 32-byte coordinates.
pub fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.push(0x04);
    spki.extend_from_slice(x);
    spki.extend_from_slice(y);
    spki
}

/// Reads modulus and exponent out of a DER SubjectPublicKeyInfo of an RSA key (what
/// `kms:GetPublicKey` returns for an RSA_2048 key).
pub fn rsa_spki_to_jwk(der: &[u8]) -> Result<RsaPublicJwk, &'static str> {
    const BAD: &str = "not an RSA SubjectPublicKeyInfo";
    let (spki, rest) = read_element(der, 0x30).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let algorithm = spki.strip_prefix(&RSA_ALGORITHM_ID[..]).ok_or(BAD)?;
    let (bits, rest) = read_element(algorithm, 0x03).ok_or(BAD)?;
    let key = bits.strip_prefix(&[0x00][..]).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let (rsa, rest) = read_element(key, 0x30).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let (n, rsa) = read_element(rsa, 0x02).ok_or(BAD)?;
    let (e, rest) = read_element(rsa, 0x02).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let unsigned = |int: &[u8]| match int {
        [0x00, rest @ ..] if !rest.is_empty() => rest.to_vec(),
        _ => int.to_vec(),
    };
    Ok(RsaPublicJwk::from_components(&unsigned(n), &unsigned(e)))
}

/// One DER element with tag `tag` off the front of `input`: (contents, rest). Definite
/// lengths up to 3 bytes, minimally encoded (long form only for lengths of 128 and more).
fn read_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, input) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, mut input) = input.split_first()?;
    let len = match len0 {
        0..=0x7f => usize::from(len0),
        0x81..=0x83 => {
            let count = usize::from(len0 & 0x7f);
            if input.len() < count || input[0] == 0 {
                return None;
            }
            let len = input[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            input = &input[count..];
            if len < 0x80 {
                return None;
            }
            len
        }
        _ => return None,
    };
    (input.len() >= len).then(|| input.split_at(len))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine as _;

    use super::*;

    fn der_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, r.len() as u8];
        body.extend_from_slice(r);
        body.extend_from_slice(&[0x02, s.len() as u8]);
        body.extend_from_slice(s);
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn converts_full_width_integers_unchanged() {
        let r = [0x11u8; 32];
        let s = [0x22u8; 32];
        let jose = der_to_jose_es256(&der_sig(&r, &s)).expect("valid");
        assert_eq!(&jose[..32], &r);
        assert_eq!(&jose[32..], &s);
    }

    #[test]
    fn drops_the_sign_byte_of_integers_with_the_high_bit_set() {
        let mut r = vec![0x00];
        r.extend([0x80u8; 32]);
        let mut s = vec![0x00];
        s.extend([0xffu8; 32]);
        let jose = der_to_jose_es256(&der_sig(&r, &s)).expect("valid");
        assert_eq!(jose.len(), 64);
        assert_eq!(&jose[..32], &[0x80u8; 32]);
        assert_eq!(&jose[32..], &[0xffu8; 32]);
    }

    #[test]
    fn left_pads_short_integers_whose_leading_bytes_were_zero() {
        // r = 0x00 0x00 0x01 .. (30 significant bytes), s = 1.
        let r = [0x01u8; 30];
        let jose = der_to_jose_es256(&der_sig(&r, &[0x01])).expect("valid");
        assert_eq!(&jose[..2], &[0, 0]);
        assert_eq!(&jose[2..32], &r);
        assert_eq!(&jose[32..63], &[0u8; 31]);
        assert_eq!(jose[63], 1);
    }

    #[test]
    fn handles_a_short_integer_that_needs_a_sign_byte() {
        let r = [0x00, 0x9a, 0xbc];
        let jose = der_to_jose_es256(&der_sig(&r, &[0x7f])).expect("valid");
        assert_eq!(&jose[30..32], &[0x9a, 0xbc]);
        assert!(jose[..30].iter().all(|b| *b == 0));
    }

    #[test]
    fn matches_an_independent_signer_that_verifies() {
        // GIVEN a P-256 key in aws-lc-rs, signing in DER (the form KMS returns)
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
        let der_key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
        for i in 0..64u8 {
            let message = [i; 40];
            let der = der_key.sign(&rng, &message).expect("sign");
            // WHEN converted to JOSE
            let jose = der_to_jose_es256(der.as_ref()).expect("KMS-style DER converts");
            // THEN the fixed-width verifier accepts it
            let public =
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, der_key.public_key().as_ref());
            public.verify(&message, &jose).expect("JOSE signature verifies");
        }
    }

    #[test]
    fn refuses_malformed_der() {
        let good = der_sig(&[0x01; 32], &[0x02; 32]);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut wrong_tag = good.clone();
        wrong_tag[0] = 0x31;
        let cases: Vec<(Vec<u8>, DerSignatureError)> = vec![
            (vec![], DerSignatureError::Malformed),
            (trailing, DerSignatureError::Malformed),
            (wrong_tag, DerSignatureError::Malformed),
            (good[..good.len() - 1].to_vec(), DerSignatureError::Malformed),
            (der_sig(&[0x80; 32], &[0x01]), DerSignatureError::Malformed), // negative r
            (der_sig(&[0x00, 0x01], &[0x01]), DerSignatureError::Malformed), // non-minimal r
            (der_sig(&[0x00], &[0x01]), DerSignatureError::OutOfRange),    // r = 0
            (der_sig(&[0x01; 33], &[0x01]), DerSignatureError::OutOfRange), // r too wide
        ];
        for (der, expected) in cases {
            assert_eq!(der_to_jose_es256(&der), Err(expected), "{der:02x?}");
        }
    }

    #[test]
    fn refuses_long_form_lengths_that_fit_the_short_form() {
        // SEQUENCE with length 0x81 0x06 (must be the short form 0x06).
        let mut long_form = vec![0x30, 0x81, 0x06];
        long_form.extend_from_slice(&der_sig(&[0x01], &[0x01])[2..]);
        assert_eq!(der_to_jose_es256(&long_form), Err(DerSignatureError::Malformed));
    }

    #[test]
    fn reads_modulus_and_exponent_out_of_an_rsa_spki() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let spki = pair.public_key().as_der().expect("spki");
        let jwk = rsa_spki_to_jwk(spki.as_ref()).expect("RSA SPKI parses");
        assert_eq!(jwk.e, "AQAB");
        assert_eq!(B64URL.decode(&jwk.n).expect("b64").len(), 256, "2048-bit modulus, no sign byte");
        assert!(rsa_spki_to_jwk(&spki.as_ref()[1..]).is_err());
        assert!(rsa_spki_to_jwk(&p256_spki(&[4u8; 32], &[4u8; 32])).is_err());
    }

    #[test]
    fn reads_the_point_out_of_a_p256_spki() {
        let spki = p256_spki(&[0xaa; 32], &[0xbb; 32]);
        let jwk = p256_spki_to_jwk(&spki).expect("valid SPKI");
        assert_eq!(B64URL.decode(&jwk.x).expect("b64"), vec![0xaa; 32]);
        assert_eq!(B64URL.decode(&jwk.y).expect("b64"), vec![0xbb; 32]);
        assert!(p256_spki_to_jwk(&spki[..spki.len() - 1]).is_err());
        assert!(p256_spki_to_jwk(&spki[1..]).is_err());
    }
}
