//! Private keys in the encodings deployments meet (PKCS#8, PKCS#1 RSA, SEC1 EC), reduced to
//! their public half so they can be compared with a certificate's public key.
//!
//! Every key is checked for consistency, so a damaged key is rejected instead of "matching"
//! through a stale embedded public key: ring does it for EC and Ed25519 keys; RSA keys are
//! checked here (see [`rsa`]), because ring refuses RSA private keys over 4096 bits and
//! deployments use up to 16384.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
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
    let (alg_id, rest) = der::expect(rest, der::SEQUENCE).ok_or_else(malformed)?;
    let (alg_oid, params) = der::expect(alg_id, der::OID).ok_or_else(malformed)?;
    let algorithm = algorithm_from_oids(alg_oid, der::expect(params, der::OID).map(|p| p.0))?;
    let (raw_key, _) = der::expect(rest, der::OCTET_STRING).ok_or_else(malformed)?;
    let public = public_from_pkcs8(algorithm, &pkcs8, raw_key)?;
    Ok(PrivateKey {
        public: PublicKey {
            algorithm,
            bytes: public,
        },
        pkcs8,
    })
}

/// The public half of a key, once checked against the private half: by [`rsa`] for RSA
/// (`raw_key` is the PKCS#1 key inside `pkcs8`), by ring for the others.
fn public_from_pkcs8(
    algorithm: KeyAlgorithm,
    pkcs8: &[u8],
    raw_key: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let rejected = |e: ring::error::KeyRejected| {
        KeyError::Invalid(format!("{algorithm} private key rejected: {e}"))
    };
    let rng = SystemRandom::new();
    let public = match algorithm {
        KeyAlgorithm::Rsa => rsa::public_of_private(raw_key)?,
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
    let key = spki.subject_public_key.data.as_ref();
    let bytes = if algorithm == KeyAlgorithm::Rsa {
        // Re-encoded, so a certificate with non-minimal integers still compares equal.
        let (n, e) = rsa::parse_public(key)
            .ok_or_else(|| KeyError::Invalid("a malformed RSA public key".into()))?;
        rsa::public_der(n, e)
    } else {
        key.to_vec()
    };
    Ok(PublicKey { algorithm, bytes })
}

/// Size of a certificate's RSA key in bits; `None` for other key types.
pub(crate) fn rsa_bits(spki: &SubjectPublicKeyInfo) -> Option<usize> {
    if spki.algorithm.algorithm.as_bytes() != oid::RSA_ENCRYPTION {
        return None;
    }
    let (n, _) = rsa::parse_public(&spki.subject_public_key.data)?;
    Some(rsa::bit_length(n))
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

/// RSA private keys (PKCS#1 `RSAPrivateKey`) read and checked without ring, whose RSA support
/// stops at 4096-bit private keys: the key must be a consistent two-prime key of 2048 bits
/// (the least ring and current guidance accept) to 16384 bits (OpenSSL's largest modulus),
/// verified with plain big-integer arithmetic.
mod rsa {
    use std::cmp::Ordering;

    use super::KeyError;
    use crate::der;

    pub(super) const MIN_BITS: usize = 2048;
    pub(super) const MAX_BITS: usize = 16384;

    /// The public key (DER `RSAPublicKey`) of a PKCS#1 private key, once the key has proved
    /// consistent.
    pub(super) fn public_of_private(pkcs1: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rejected =
            |reason: &str| KeyError::Invalid(format!("RSA private key rejected: {reason}"));
        let (body, _) = der::expect(pkcs1, der::SEQUENCE).ok_or_else(|| rejected("malformed"))?;
        let mut fields = Vec::with_capacity(9);
        let mut rest = body;
        while !rest.is_empty() && fields.len() < 9 {
            let (value, next) =
                der::expect(rest, der::INTEGER).ok_or_else(|| rejected("malformed"))?;
            fields.push(unsigned(value).ok_or_else(|| rejected("malformed (negative integer)"))?);
            rest = next;
        }
        let [version, n, e, d, p, q, dp, dq, qinv] = fields[..] else {
            return Err(rejected("malformed (missing fields)"));
        };
        // Version 1 adds otherPrimeInfos: a multi-prime key, which gnutls does not load.
        if !version.is_empty() {
            return Err(rejected("multi-prime keys are not supported"));
        }
        if !rest.is_empty() {
            return Err(rejected("malformed (trailing data)"));
        }
        let bits = bit_length(n);
        if bits < MIN_BITS {
            return Err(rejected(&format!(
                "{bits}-bit modulus is too small; use at least {MIN_BITS} bits"
            )));
        }
        if bits > MAX_BITS {
            return Err(rejected(&format!(
                "{bits}-bit modulus is larger than {MAX_BITS} bits, the most accepted"
            )));
        }
        let integers = [n, e, d, p, q, dp, dq, qinv];
        // None is larger than the modulus in a sound key; this also bounds the work below.
        if integers.iter().any(|int| bit_length(int) > bits) {
            return Err(rejected(
                "malformed (a component is larger than the modulus)",
            ));
        }
        check_consistent(integers).map_err(rejected)?;
        Ok(public_der(n, e))
    }

    /// `(n, e)` of a DER `RSAPublicKey`, without leading zeros.
    pub(super) fn parse_public(key: &[u8]) -> Option<(&[u8], &[u8])> {
        let (body, _) = der::expect(key, der::SEQUENCE)?;
        let (n, rest) = der::expect(body, der::INTEGER)?;
        let (e, _) = der::expect(rest, der::INTEGER)?;
        Some((unsigned(n)?, unsigned(e)?))
    }

    /// DER `RSAPublicKey { n, e }` with minimal integers, as certificates carry it.
    pub(super) fn public_der(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut body = der_unsigned(n);
        body.extend(der_unsigned(e));
        der::tlv(der::SEQUENCE, &body)
    }

    pub(super) fn bit_length(be: &[u8]) -> usize {
        be.first()
            .map_or(0, |&top| be.len() * 8 - top.leading_zeros() as usize)
    }

    /// The magnitude of a non-negative DER INTEGER without leading zero bytes; `None` when
    /// negative or empty.
    fn unsigned(int: &[u8]) -> Option<&[u8]> {
        match int.first() {
            None => None,
            Some(&b) if b & 0x80 != 0 => None,
            Some(_) => Some(&int[int.iter().take_while(|&&b| b == 0).count()..]),
        }
    }

    fn der_unsigned(magnitude: &[u8]) -> Vec<u8> {
        let mut content = Vec::with_capacity(magnitude.len() + 1);
        if magnitude.first().is_none_or(|&b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend_from_slice(magnitude);
        der::tlv(der::INTEGER, &content)
    }

    /// What a private-key operation relies on: n = p·q, and e·d, e·dp, e·dq and q·qinv are
    /// the inverses they claim to be (modulo p−1, q−1 and p).
    fn check_consistent(integers: [&[u8]; 8]) -> Result<(), &'static str> {
        let [n, e, d, p, q, dp, dq, qinv] = integers.map(Big::from_be);
        if !e.is_odd() || e.cmp(&Big::from_u32(3)) == Ordering::Less {
            return Err("its public exponent is not an odd number of at least 3");
        }
        if p.cmp(&Big::from_u32(1)) != Ordering::Greater
            || q.cmp(&Big::from_u32(1)) != Ordering::Greater
            || p.mul(&q).cmp(&n) != Ordering::Equal
        {
            return Err("its primes do not multiply to its modulus");
        }
        let (p1, q1) = (p.minus_one(), q.minus_one());
        if !e.mul(&d).rem(&p1).is_one() || !e.mul(&d).rem(&q1).is_one() {
            return Err("its private exponent does not invert its public exponent");
        }
        if !e.mul(&dp).rem(&p1).is_one() || !e.mul(&dq).rem(&q1).is_one() {
            return Err("its CRT exponents do not invert its public exponent");
        }
        if !q.mul(&qinv).rem(&p).is_one() {
            return Err("its CRT coefficient is not the inverse of q modulo p");
        }
        Ok(())
    }

    /// A non-negative integer as little-endian 32-bit limbs, without high zero limbs. Just the
    /// operations the consistency check needs; speed is no concern at these sizes.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Big(Vec<u32>);

    impl Big {
        fn from_be(bytes: &[u8]) -> Big {
            let limbs = bytes
                .rchunks(4)
                .map(|chunk| chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
                .collect();
            Big(limbs).trimmed()
        }

        fn from_u32(value: u32) -> Big {
            Big(vec![value]).trimmed()
        }

        fn trimmed(mut self) -> Big {
            while self.0.last() == Some(&0) {
                self.0.pop();
            }
            self
        }

        fn is_one(&self) -> bool {
            self.0 == [1]
        }

        fn is_odd(&self) -> bool {
            self.0.first().is_some_and(|&limb| limb & 1 == 1)
        }

        fn cmp(&self, other: &Big) -> Ordering {
            self.0
                .len()
                .cmp(&other.0.len())
                .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
        }

        fn mul(&self, other: &Big) -> Big {
            let mut out = vec![0u32; self.0.len() + other.0.len()];
            for (i, &a) in self.0.iter().enumerate() {
                let mut carry = 0u64;
                for (j, &b) in other.0.iter().enumerate() {
                    let t = u64::from(a) * u64::from(b) + u64::from(out[i + j]) + carry;
                    out[i + j] = t as u32;
                    carry = t >> 32;
                }
                out[i + other.0.len()] = carry as u32;
            }
            Big(out).trimmed()
        }

        /// `self - 1`; `self` must be positive.
        fn minus_one(&self) -> Big {
            let mut limbs = self.0.clone();
            for limb in &mut limbs {
                let (value, borrow) = limb.overflowing_sub(1);
                *limb = value;
                if !borrow {
                    break;
                }
            }
            Big(limbs).trimmed()
        }

        /// `self mod m` by binary long division; `m` must be positive.
        fn rem(&self, m: &Big) -> Big {
            let mut r = Big(Vec::with_capacity(m.0.len() + 1));
            for i in (0..self.0.len() * 32).rev() {
                r.shift_left_one((self.0[i / 32] >> (i % 32)) & 1);
                if r.cmp(m) != Ordering::Less {
                    r.sub_assign(m);
                }
            }
            r
        }

        /// `self = self * 2 + bit`.
        fn shift_left_one(&mut self, bit: u32) {
            let mut carry = bit;
            for limb in &mut self.0 {
                let top = *limb >> 31;
                *limb = (*limb << 1) | carry;
                carry = top;
            }
            if carry != 0 {
                self.0.push(carry);
            }
        }

        /// `self -= other`; `self` must not be smaller.
        fn sub_assign(&mut self, other: &Big) {
            let mut borrow = false;
            for (i, limb) in self.0.iter_mut().enumerate() {
                let b = other.0.get(i).copied().unwrap_or(0);
                let (v1, o1) = limb.overflowing_sub(b);
                let (v2, o2) = v1.overflowing_sub(u32::from(borrow));
                *limb = v2;
                borrow = o1 || o2;
            }
            while self.0.last() == Some(&0) {
                self.0.pop();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn big(value: u128) -> Big {
            Big::from_be(&value.to_be_bytes())
        }

        #[test]
        fn arithmetic_matches_u128() {
            let cases = [
                (0u128, 1u128),
                (1, 1),
                (0xffff_ffff, 0xffff_ffff),
                (0x1_0000_0000, 7),
                (0xdead_beef_0bad_f00d, 0x1234_5678_9abc),
                (u64::MAX as u128, u64::MAX as u128),
            ];
            for (a, b) in cases {
                assert_eq!(big(a).mul(&big(b)), big(a * b), "{a} * {b}");
                assert_eq!(big(a).rem(&big(b)), big(a % b), "{a} % {b}");
                assert_eq!(big(a * b + 1).minus_one(), big(a * b), "{a} * {b}");
            }
            assert_eq!(big(5).cmp(&big(1 << 40)), Ordering::Less);
            assert!(big(1).is_one() && !big(0).is_one() && big(9).is_odd());
        }

        #[test]
        fn integers_are_read_and_written_as_der() {
            assert_eq!(unsigned(&[0, 0x80, 1]), Some(&[0x80, 1][..]));
            assert_eq!(unsigned(&[0x80]), None);
            assert_eq!(unsigned(&[]), None);
            assert_eq!(der_unsigned(&[0x80]), vec![der::INTEGER, 2, 0, 0x80]);
            assert_eq!(der_unsigned(&[]), vec![der::INTEGER, 1, 0]);
            assert_eq!(bit_length(&[0x01, 0]), 9);
        }
    }
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

    /// The rsa2048 PKCS#1 fixture with one bit flipped in the middle of its `field`-th
    /// INTEGER (0 version, 1 n, 2 e, 3 d, 4 p, 5 q, 6 dp, 7 dq, 8 qinv).
    fn damaged_rsa(field: usize) -> String {
        let block = pem::parse(fixture("rsa2048-pkcs1.pem")).unwrap();
        let mut bytes = block.contents().to_vec();
        let (mut rest, _) = der::expect(&bytes, der::SEQUENCE).unwrap();
        for _ in 0..field {
            rest = der::read_tlv(rest).unwrap().2;
        }
        let value = der::read_tlv(rest).unwrap().1;
        let middle = value.as_ptr() as usize - bytes.as_ptr() as usize + value.len() / 2;
        bytes[middle] ^= 1;
        pem::encode(&pem::Pem::new("RSA PRIVATE KEY", bytes))
    }

    fn rejection(pem: &str) -> String {
        match parse_private_key_pem(pem.as_bytes()) {
            Err(KeyError::Invalid(reason)) => reason,
            Err(other) => panic!("expected Invalid, got {other:?}"),
            Ok(_) => panic!("damaged key accepted"),
        }
    }

    #[test]
    fn inconsistent_rsa_keys_are_rejected() {
        for (field, reason) in [
            (1, "its primes do not multiply to its modulus"),
            (4, "its primes do not multiply to its modulus"),
            (
                3,
                "its private exponent does not invert its public exponent",
            ),
            (6, "its CRT exponents do not invert its public exponent"),
            (7, "its CRT exponents do not invert its public exponent"),
            (8, "its CRT coefficient is not the inverse of q modulo p"),
        ] {
            let reason_found = rejection(&damaged_rsa(field));
            assert_eq!(
                reason_found,
                format!("RSA private key rejected: {reason}"),
                "field {field}"
            );
        }
    }

    #[test]
    fn rsa_key_sizes_from_2048_to_16384_bits() {
        let small = rejection(&fixture("rsa1024-pkcs1.pem"));
        assert!(small.contains("1024-bit modulus is too small"), "{small}");
        for name in ["big-rsa/rsa8192-pkcs1.pem", "big-rsa/rsa16384-pkcs8.pem"] {
            assert_eq!(algorithm_of(name), KeyAlgorithm::Rsa);
        }
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
