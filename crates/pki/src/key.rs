//! Private keys in the encodings deployments meet (PKCS#8, PKCS#1 RSA, SEC1 EC), reduced to
//! their public half so they can be compared with a certificate's public key.
//!
//! ring does the parsing: it also checks the private and public halves are consistent, so a
//! damaged key is rejected instead of "matching" through a stale embedded public key.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::der;
use crate::finding::display_safe;
use crate::pemfile;

/// Public key algorithms this crate can match and sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rsa => "RSA",
            Self::EcdsaP256 => "ECDSA P-256",
            Self::EcdsaP384 => "ECDSA P-384",
            Self::Ed25519 => "Ed25519",
        })
    }
}

/// A public key as carried in a certificate: the content of the SPKI BIT STRING
/// (RSAPublicKey DER, uncompressed EC point, or raw Ed25519 key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub algorithm: KeyAlgorithm,
    pub bytes: Vec<u8>,
}

/// A parsed private key, normalised to PKCS#8 (what rcgen and ring load).
pub(crate) struct PrivateKey {
    pub public: PublicKey,
    pub pkcs8: Vec<u8>,
}

/// Why a key could not be used. `Unsupported` means "well-formed, but we cannot check it",
/// which validation reports as a warning rather than a broken file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    Invalid(String),
    Unsupported(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(reason) | Self::Unsupported(reason) => f.write_str(reason),
        }
    }
}

/// DER contents of the OIDs we dispatch on.
mod oid {
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
}

/// Parses the single private key in a PEM file.
pub(crate) fn parse_private_key_pem(bytes: &[u8]) -> Result<PrivateKey, KeyError> {
    let blocks = pemfile::blocks(bytes).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let mut keys = Vec::new();
    for block in &blocks {
        if is_legacy_encrypted(block) {
            return Err(encrypted(block.tag()));
        }
        let encoding = match block.tag() {
            "PRIVATE KEY" => Encoding::Pkcs8,
            "RSA PRIVATE KEY" => Encoding::Pkcs1,
            "EC PRIVATE KEY" => Encoding::Sec1,
            "ENCRYPTED PRIVATE KEY" => return Err(encrypted(block.tag())),
            // `openssl ecparam -genkey` writes the curve parameters before the key.
            "EC PARAMETERS" => continue,
            other => {
                return Err(KeyError::Invalid(format!(
                    "unexpected PEM block '{}' in a private key file",
                    display_safe(other)
                )))
            }
        };
        keys.push((encoding, block.contents()));
    }
    match keys.as_slice() {
        [] => Err(KeyError::Invalid("no private key found".into())),
        [(encoding, der_bytes)] => match encoding {
            Encoding::Pkcs8 => from_pkcs8(der_bytes.to_vec()),
            Encoding::Pkcs1 => from_pkcs1(der_bytes),
            Encoding::Sec1 => from_sec1(der_bytes),
        },
        many => Err(KeyError::Invalid(format!(
            "holds {} private keys; expected exactly one",
            many.len()
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Pkcs8,
    Pkcs1,
    Sec1,
}

fn is_legacy_encrypted(block: &pem::Pem) -> bool {
    block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"))
}

fn encrypted(label: &str) -> KeyError {
    KeyError::Invalid(format!(
        "private key is encrypted ({label}); libvirt needs an unencrypted key"
    ))
}

fn from_pkcs8(pkcs8: Vec<u8>) -> Result<PrivateKey, KeyError> {
    let malformed = || KeyError::Invalid("malformed PKCS#8 private key".into());
    let (body, _) = der::expect(&pkcs8, der::SEQUENCE).ok_or_else(malformed)?;
    let (_version, rest) = der::expect(body, der::INTEGER).ok_or_else(malformed)?;
    let (alg_id, _) = der::expect(rest, der::SEQUENCE).ok_or_else(malformed)?;
    let (alg_oid, params) = der::expect(alg_id, der::OID).ok_or_else(malformed)?;
    let algorithm = algorithm_from_oids(alg_oid, der::expect(params, der::OID).map(|p| p.0))?;
    let public = public_from_pkcs8(algorithm, &pkcs8)?;
    Ok(PrivateKey {
        public: PublicKey {
            algorithm,
            bytes: public,
        },
        pkcs8,
    })
}

fn public_from_pkcs8(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<Vec<u8>, KeyError> {
    let rejected = |e: ring::error::KeyRejected| {
        KeyError::Invalid(format!("{algorithm} private key rejected: {e}"))
    };
    let rng = SystemRandom::new();
    let public = match algorithm {
        KeyAlgorithm::Rsa => RsaKeyPair::from_pkcs8(pkcs8)
            .map_err(rejected)?
            .public()
            .as_ref()
            .to_vec(),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
            let signing = if algorithm == KeyAlgorithm::EcdsaP256 {
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING
            };
            EcdsaKeyPair::from_pkcs8(signing, pkcs8, &rng)
                .map_err(rejected)?
                .public_key()
                .as_ref()
                .to_vec()
        }
        // OpenSSL writes PKCS#8 v1 Ed25519 keys without the public half; "maybe_unchecked"
        // accepts those and derives it.
        KeyAlgorithm::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(rejected)?
            .public_key()
            .as_ref()
            .to_vec(),
    };
    Ok(public)
}

fn from_pkcs1(pkcs1: &[u8]) -> Result<PrivateKey, KeyError> {
    let null = der::tlv(der::NULL, &[]);
    from_pkcs8(wrap_pkcs8(oid::RSA_ENCRYPTION, &null, pkcs1))
}

/// SEC1 `ECPrivateKey`: the curve is in the optional `[0]` field; without it, try both
/// supported curves (ring rejects the wrong one because the public point will not match).
fn from_sec1(sec1: &[u8]) -> Result<PrivateKey, KeyError> {
    let malformed = || KeyError::Invalid("malformed SEC1 EC private key".into());
    let (body, _) = der::expect(sec1, der::SEQUENCE).ok_or_else(malformed)?;
    let (_version, rest) = der::expect(body, der::INTEGER).ok_or_else(malformed)?;
    let (_scalar, rest) = der::expect(rest, der::OCTET_STRING).ok_or_else(malformed)?;
    let curve = der::expect(rest, der::CONTEXT_0)
        .and_then(|(params, _)| der::expect(params, der::OID))
        .map(|(curve, _)| curve);
    let candidates: Vec<&[u8]> = match curve {
        Some(curve) => {
            algorithm_from_oids(oid::EC_PUBLIC_KEY, Some(curve))?;
            vec![curve]
        }
        None => vec![oid::P256, oid::P384],
    };
    let mut last_error = malformed();
    for curve in candidates {
        let params = der::tlv(der::OID, curve);
        match from_pkcs8(wrap_pkcs8(oid::EC_PUBLIC_KEY, &params, sec1)) {
            Ok(key) => return Ok(key),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// PKCS#8 `PrivateKeyInfo` v1 around a raw key.
fn wrap_pkcs8(alg_oid: &[u8], params_tlv: &[u8], raw_key: &[u8]) -> Vec<u8> {
    let mut alg_id = der::tlv(der::OID, alg_oid);
    alg_id.extend_from_slice(params_tlv);
    let mut body = der::tlv(der::INTEGER, &[0]);
    body.extend(der::tlv(der::SEQUENCE, &alg_id));
    body.extend(der::tlv(der::OCTET_STRING, raw_key));
    der::tlv(der::SEQUENCE, &body)
}

fn algorithm_from_oids(alg: &[u8], curve: Option<&[u8]>) -> Result<KeyAlgorithm, KeyError> {
    match (alg, curve) {
        (oid::RSA_ENCRYPTION, _) => Ok(KeyAlgorithm::Rsa),
        (oid::ED25519, _) => Ok(KeyAlgorithm::Ed25519),
        (oid::EC_PUBLIC_KEY, Some(oid::P256)) => Ok(KeyAlgorithm::EcdsaP256),
        (oid::EC_PUBLIC_KEY, Some(oid::P384)) => Ok(KeyAlgorithm::EcdsaP384),
        (oid::EC_PUBLIC_KEY, Some(other)) => Err(KeyError::Unsupported(format!(
            "unsupported EC curve {}",
            der::oid_to_string(other)
        ))),
        (oid::EC_PUBLIC_KEY, None) => {
            Err(KeyError::Unsupported("EC key without a named curve".into()))
        }
        (other, _) => Err(KeyError::Unsupported(format!(
            "unsupported key algorithm {}",
            der::oid_to_string(other)
        ))),
    }
}

/// The public key of a certificate, in the same form as [`PrivateKey::public`].
pub(crate) fn certificate_public_key(spki: &SubjectPublicKeyInfo) -> Result<PublicKey, KeyError> {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    let algorithm = algorithm_from_oids(
        spki.algorithm.algorithm.as_bytes(),
        curve.as_ref().map(|c| c.as_bytes()),
    )?;
    Ok(PublicKey {
        algorithm,
        bytes: spki.subject_public_key.data.to_vec(),
    })
}

/// Compares a private key with a certificate's public key; `Err` carries the reason.
pub(crate) fn check_match(key: &PublicKey, cert: &PublicKey) -> Result<(), String> {
    if key.algorithm != cert.algorithm {
        return Err(format!(
            "private key is {} but the certificate's key is {}",
            key.algorithm, cert.algorithm
        ));
    }
    if key.bytes != cert.bytes {
        return Err("private key does not match the certificate's public key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture;

    fn algorithm_of(name: &str) -> KeyAlgorithm {
        parse_private_key_pem(fixture(name).as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .public
            .algorithm
    }

    #[test]
    fn parses_every_supported_encoding() {
        assert_eq!(algorithm_of("rsa2048-pkcs1.pem"), KeyAlgorithm::Rsa);
        assert_eq!(algorithm_of("rsa2048-pkcs8.pem"), KeyAlgorithm::Rsa);
        assert_eq!(algorithm_of("ec-p256-sec1.pem"), KeyAlgorithm::EcdsaP256);
        assert_eq!(algorithm_of("ec-p384-sec1.pem"), KeyAlgorithm::EcdsaP384);
        assert_eq!(algorithm_of("ec-p384-pkcs8.pem"), KeyAlgorithm::EcdsaP384);
        assert_eq!(algorithm_of("ed25519-pkcs8.pem"), KeyAlgorithm::Ed25519);
    }

    #[test]
    fn pkcs1_and_pkcs8_of_the_same_key_agree() {
        let a = parse_private_key_pem(fixture("rsa2048-pkcs1.pem").as_bytes()).unwrap();
        let b = parse_private_key_pem(fixture("rsa2048-pkcs8.pem").as_bytes()).unwrap();
        assert_eq!(a.public, b.public);
        let c = parse_private_key_pem(fixture("ec-p384-sec1.pem").as_bytes()).unwrap();
        let d = parse_private_key_pem(fixture("ec-p384-pkcs8.pem").as_bytes()).unwrap();
        assert_eq!(c.public, d.public);
    }

    #[test]
    fn rcgen_keys_parse() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let parsed = parse_private_key_pem(key.serialize_pem().as_bytes()).unwrap();
            assert_eq!(parsed.public.bytes, key.public_key_raw());
        }
    }

    #[test]
    fn ec_parameters_block_before_key_is_skipped() {
        let pem = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            fixture("ec-p256-sec1.pem")
        );
        assert!(parse_private_key_pem(pem.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_encrypted_empty_and_multiple_keys() {
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAQID\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = parse_private_key_pem(enc.as_bytes()).err().unwrap();
        assert!(err.to_string().contains("encrypted"), "{err}");
        let err = parse_private_key_pem(b"").err().unwrap();
        assert!(err.to_string().contains("no private key"), "{err}");
        let two = fixture("ec-p256-sec1.pem").repeat(2);
        let err = parse_private_key_pem(two.as_bytes()).err().unwrap();
        assert!(err.to_string().contains("2 private keys"), "{err}");
    }

    #[test]
    fn corrupt_key_is_invalid() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            parse_private_key_pem(pem.as_bytes()),
            Err(KeyError::Invalid(_))
        ));
    }
}
