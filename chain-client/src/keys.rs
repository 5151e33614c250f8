//! Host (P-256) and tenant (secp256k1) keys and signatures (PROTOCOL.md §5).
//!
//! All signatures are ECDSA over a 32-byte digest taken as the message hash ("prehashed"), which is what the
//! RIP-7212 `P256VERIFY` precompile and `ecrecover` check. Signing uses RFC 6979 deterministic nonces and
//! normalises `s` to the lower half of the group order; verification rejects a high `s`.

use core::fmt;

use k256::ecdsa as k1;
use p256::ecdsa as r1;
#[cfg(not(feature = "std"))]
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use rand_core::CryptoRngCore;

use crate::eip712::{Domain, keccak};
use crate::types::{Address, B256};
use crate::wire::{ChannelState, Receipt, SignedChannelState, SignedReceipt};

/// Why a signature or key was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// `s` is in the upper half of the group order (not normalised).
    #[error("signature s is not low-s normalised")]
    HighS,
    /// The public key is not a valid SEC1 point on the curve.
    #[error("invalid public key encoding")]
    InvalidKey,
    /// The recovery byte `v` is not 27 or 28.
    #[error("recovery byte v = {0} is not 27 or 28")]
    InvalidRecoveryByte(u8),
    /// The secret key bytes are zero or not below the group order.
    #[error("invalid secret key")]
    InvalidSecretKey,
    /// `r` or `s` is zero or not below the group order.
    #[error("malformed signature scalars")]
    Malformed,
    /// The signature does not verify (or no key can be recovered from it).
    #[error("signature verification failed")]
    Mismatch,
    /// The signature is valid but made by another key than the one expected.
    #[error("signature made by an unexpected signer")]
    UnexpectedSigner,
}

/// A host P-256 signature `r || s` (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostSignature(pub [u8; 64]);

impl HostSignature {
    /// The 64 bytes `r || s`.
    pub const fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for HostSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostSignature(0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A tenant secp256k1 signature `r || s || v` (65 bytes, `v` 27 or 28), as `ecrecover` takes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantSignature(pub [u8; 65]);

impl TenantSignature {
    /// The 65 bytes `r || s || v`.
    pub const fn to_bytes(&self) -> [u8; 65] {
        self.0
    }
}

impl fmt::Debug for TenantSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantSignature(0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The host's receipt signing key (P-256). Generated per boot, held in memory only, zeroized on drop; it has
/// no `Debug` and no export.
pub struct HostSigningKey(r1::SigningKey);

impl HostSigningKey {
    /// Generates a key from the RNG passed in (the agent passes the OS RNG).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(r1::SigningKey::random(rng))
    }

    /// A key from its 32-byte big-endian scalar (test vectors, simulated platform keys).
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, SignatureError> {
        r1::SigningKey::from_slice(secret)
            .map(Self)
            .map_err(|_| SignatureError::InvalidSecretKey)
    }

    /// The public key.
    pub fn verifying_key(&self) -> HostVerifyingKey {
        HostVerifyingKey(*self.0.verifying_key())
    }

    /// Signs a 32-byte digest: RFC 6979 nonce, low-s.
    pub fn sign_prehash(&self, digest: &B256) -> HostSignature {
        // INVARIANT: signing a 32-byte prehash with a valid non-zero scalar only fails if RFC 6979 yields an
        // invalid nonce, which it retries internally; the error arm is unreachable in practice.
        #[cfg(feature = "std")]
        let sig: r1::Signature = match crate::p256_table::sign_prehash(&self.0, &digest.0) {
            Some(s) => s,
            None => unreachable_signing(),
        };
        #[cfg(not(feature = "std"))]
        let sig: r1::Signature = match self.0.sign_prehash(&digest.0) {
            Ok(s) => s,
            Err(_) => unreachable_signing(),
        };
        let sig = sig.normalize_s().unwrap_or(sig);
        HostSignature(sig.to_bytes().into())
    }

    /// Signs the receipt's EIP-712 digest under `domain`.
    pub fn sign_receipt(&self, receipt: Receipt, domain: &Domain) -> SignedReceipt {
        let host_signature = self.sign_prehash(&receipt.signing_digest(domain));
        SignedReceipt {
            receipt,
            host_signature,
        }
    }

    /// Counter-signs a channel state's EIP-712 digest (for a cooperative close).
    pub fn cosign_state(&self, state: &ChannelState, domain: &Domain) -> HostSignature {
        self.sign_prehash(&state.signing_digest(domain))
    }
}

#[cold]
#[allow(clippy::panic)]
fn unreachable_signing() -> ! {
    // INVARIANT: see `sign_prehash`; reaching this means the ECDSA implementation is broken.
    panic!("ECDSA prehash signing failed")
}

/// The host's receipt verifying key (P-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostVerifyingKey(r1::VerifyingKey);

impl HostVerifyingKey {
    /// Parses a SEC1 point (compressed or uncompressed).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, SignatureError> {
        r1::VerifyingKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| SignatureError::InvalidKey)
    }

    /// SEC1 uncompressed (65 bytes), the keyset's `receipt_key`.
    pub fn to_sec1(&self) -> [u8; 65] {
        let point = self.0.to_encoded_point(false);
        let mut out = [0u8; 65];
        // INVARIANT: an uncompressed P-256 point is always 65 bytes.
        if let Some(dst) = out.get_mut(..point.as_bytes().len()) {
            dst.copy_from_slice(point.as_bytes());
        }
        out
    }

    /// `host_key_id = H256(sec1_uncompressed)`.
    pub fn key_id(&self) -> B256 {
        crate::hash::host_key_id(&self.to_sec1())
    }

    /// Verifies a signature over a 32-byte digest; rejects high-s.
    pub fn verify_prehash(&self, digest: &B256, sig: &HostSignature) -> Result<(), SignatureError> {
        let parsed = r1::Signature::from_slice(&sig.0).map_err(|_| SignatureError::Malformed)?;
        if parsed.normalize_s().is_some() {
            return Err(SignatureError::HighS);
        }
        self.0
            .verify_prehash(&digest.0, &parsed)
            .map_err(|_| SignatureError::Mismatch)
    }
}

impl SignedReceipt {
    /// Verifies the host signature over the receipt's digest under `domain`, and that the receipt names this
    /// key (`host_key_id`). Returns the receipt hash.
    pub fn verify(&self, key: &HostVerifyingKey, domain: &Domain) -> Result<B256, SignatureError> {
        if self.receipt.host_key_id != key.key_id() {
            return Err(SignatureError::UnexpectedSigner);
        }
        let digest = self.receipt.signing_digest(domain);
        key.verify_prehash(&digest, &self.host_signature)?;
        Ok(digest)
    }
}

impl SignedChannelState {
    /// Recovers the tenant signature's signer and requires it to be `state.tenant`.
    pub fn verify_tenant(&self, domain: &Domain) -> Result<Address, SignatureError> {
        let signer = recover_tenant(&self.state.signing_digest(domain), &self.tenant_signature)?;
        if signer != self.state.tenant {
            return Err(SignatureError::UnexpectedSigner);
        }
        Ok(signer)
    }

    /// Verifies the host counter-signature, if present, under `key`; `Ok(false)` when there is none. The state
    /// names the operator account, not a key: the caller passes a receipt key that account attested (the
    /// contract accepts any of them).
    pub fn verify_host(
        &self,
        key: &HostVerifyingKey,
        domain: &Domain,
    ) -> Result<bool, SignatureError> {
        match &self.host_signature {
            None => Ok(false),
            Some(sig) => key
                .verify_prehash(&self.state.signing_digest(domain), sig)
                .map(|()| true),
        }
    }
}

/// A tenant's wallet key (secp256k1). Zeroized on drop; no `Debug`.
pub struct TenantSigner(k1::SigningKey);

impl TenantSigner {
    /// Generates a key from the RNG passed in.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(k1::SigningKey::random(rng))
    }

    /// A key from its 32-byte big-endian scalar (a wallet private key).
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, SignatureError> {
        k1::SigningKey::from_slice(secret)
            .map(Self)
            .map_err(|_| SignatureError::InvalidSecretKey)
    }

    /// The EVM address of this key.
    pub fn address(&self) -> Address {
        address_of(self.0.verifying_key())
    }

    /// Signs a 32-byte digest: RFC 6979 nonce, low-s, `v` = 27 + y-parity.
    pub fn sign_prehash(&self, digest: &B256) -> TenantSignature {
        let (sig, recid) = match self.0.sign_prehash_recoverable(&digest.0) {
            Ok(v) => v,
            Err(_) => unreachable_signing(),
        };
        // k256 already normalises; keep the parity consistent if it ever did not.
        let (sig, odd) = match sig.normalize_s() {
            Some(low) => (low, !recid.is_y_odd()),
            None => (sig, recid.is_y_odd()),
        };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + u8::from(odd);
        TenantSignature(out)
    }

    /// Signs a channel state's EIP-712 digest under `domain`.
    pub fn sign_state(&self, state: &ChannelState, domain: &Domain) -> TenantSignature {
        self.sign_prehash(&state.signing_digest(domain))
    }
}

fn address_of(key: &k1::VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    let hash = keccak(&[point.as_bytes().get(1..).unwrap_or_default()]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&hash.0[12..]);
    Address(a)
}

/// Recovers the address that made a tenant signature over `digest` (what `ecrecover` returns). Rejects high-s
/// and `v` other than 27/28.
pub fn recover_tenant(digest: &B256, sig: &TenantSignature) -> Result<Address, SignatureError> {
    let (rs, v) = sig.0.split_at(64);
    let v = v.first().copied().unwrap_or_default();
    let odd = match v {
        27 => false,
        28 => true,
        other => return Err(SignatureError::InvalidRecoveryByte(other)),
    };
    let parsed = k1::Signature::from_slice(rs).map_err(|_| SignatureError::Malformed)?;
    if parsed.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let key = recover_key(digest, &parsed, odd).ok_or(SignatureError::Mismatch)?;
    Ok(address_of(&key))
}

/// Public-key recovery `Q = r⁻¹(s·R − z·G)` (SEC 1 §4.1.6) for an `r` that is the x-coordinate of `R` itself.
/// This is `ecdsa`'s `recover_from_prehash` without its closing `verify_prehash`, a second double-scalar
/// multiplication that cannot fail for the key just recovered (it recomputes `u1·G + u2·Q = R`, whose x is
/// `r`), so it only doubled the cost. `None` if `r` is no x-coordinate on the curve or `Q` is the identity.
fn recover_key(digest: &B256, sig: &k1::Signature, odd: bool) -> Option<k1::VerifyingKey> {
    use k256::elliptic_curve::ff::PrimeField as _;
    use k256::elliptic_curve::ops::{LinearCombination as _, Reduce};
    use k256::elliptic_curve::point::DecompressPoint as _;
    use k256::elliptic_curve::subtle::Choice;
    use k256::{AffinePoint, ProjectivePoint, Scalar, U256};

    let (r, s) = sig.split_scalars();
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&digest.0.into());
    let big_r = Option::<AffinePoint>::from(AffinePoint::decompress(
        &r.to_repr(),
        Choice::from(u8::from(odd)),
    ))?;
    let r_inv = Option::<Scalar>::from(r.invert())?;
    let u1 = -(r_inv * z);
    let u2 = r_inv * *s;
    let q = ProjectivePoint::lincomb(
        &ProjectivePoint::GENERATOR,
        &u1,
        &ProjectivePoint::from(big_r),
        &u2,
    );
    k1::VerifyingKey::from_affine(q.to_affine()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use p256::elliptic_curve::ops::Neg;

    const DOMAIN: Domain = Domain {
        chain_id: 31337,
        settlement: Address([0x5e; 20]),
    };

    fn host() -> HostSigningKey {
        HostSigningKey::from_bytes(&[0x11; 32]).unwrap()
    }

    fn tenant() -> TenantSigner {
        TenantSigner::from_bytes(&[0x22; 32]).unwrap()
    }

    fn digest() -> B256 {
        B256([0x42; 32])
    }

    /// The same signature with `s` replaced by `n - s`.
    fn high_s_host(sig: &HostSignature) -> HostSignature {
        let parsed = r1::Signature::from_slice(&sig.0).unwrap();
        let high = r1::Signature::from_scalars(parsed.r().to_bytes(), parsed.s().neg().to_bytes())
            .unwrap();
        assert!(high.normalize_s().is_some(), "the negated s is high");
        HostSignature(high.to_bytes().into())
    }

    #[test]
    fn host_signature_round_trip_and_low_s() {
        let key = host();
        let sig = key.sign_prehash(&digest());
        let parsed = r1::Signature::from_slice(&sig.0).unwrap();
        assert!(parsed.normalize_s().is_none(), "signing yields low-s");
        key.verifying_key().verify_prehash(&digest(), &sig).unwrap();
        // Deterministic (RFC 6979).
        assert_eq!(sig, key.sign_prehash(&digest()));
    }

    #[test]
    fn host_signature_flipped_bit_is_mismatch() {
        let key = host();
        let mut sig = key.sign_prehash(&digest());
        sig.0[63] ^= 1;
        assert!(matches!(
            key.verifying_key().verify_prehash(&digest(), &sig),
            Err(SignatureError::Mismatch)
        ));
    }

    #[test]
    fn host_signature_high_s_is_rejected() {
        let key = host();
        let sig = high_s_host(&key.sign_prehash(&digest()));
        // The underlying curve arithmetic would accept it; our rule must not.
        let parsed = r1::Signature::from_slice(&sig.0).unwrap();
        assert!(
            key.0
                .verifying_key()
                .verify_prehash(&digest().0, &parsed)
                .is_ok()
        );
        assert!(matches!(
            key.verifying_key().verify_prehash(&digest(), &sig),
            Err(SignatureError::HighS)
        ));
    }

    #[test]
    fn host_signature_zero_scalar_is_malformed() {
        let key = host();
        let sig = HostSignature([0; 64]);
        assert!(matches!(
            key.verifying_key().verify_prehash(&digest(), &sig),
            Err(SignatureError::Malformed)
        ));
    }

    #[test]
    fn host_signature_wrong_digest_or_key() {
        let key = host();
        let sig = key.sign_prehash(&digest());
        assert!(matches!(
            key.verifying_key().verify_prehash(&B256([0x43; 32]), &sig),
            Err(SignatureError::Mismatch)
        ));
        let other = HostSigningKey::from_bytes(&[0x12; 32]).unwrap();
        assert!(matches!(
            other.verifying_key().verify_prehash(&digest(), &sig),
            Err(SignatureError::Mismatch)
        ));
    }

    #[test]
    fn host_verifying_key_sec1() {
        let vk = host().verifying_key();
        let sec1 = vk.to_sec1();
        assert_eq!(sec1[0], 4);
        assert_eq!(HostVerifyingKey::from_sec1(&sec1).unwrap(), vk);
        assert_eq!(vk.key_id(), crate::hash::host_key_id(&sec1));
        let mut bad = sec1;
        bad[64] ^= 1; // off the curve
        assert!(matches!(
            HostVerifyingKey::from_sec1(&bad),
            Err(SignatureError::InvalidKey)
        ));
        assert!(matches!(
            HostVerifyingKey::from_sec1(&sec1[..64]),
            Err(SignatureError::InvalidKey)
        ));
    }

    #[test]
    fn invalid_secret_keys() {
        assert!(matches!(
            HostSigningKey::from_bytes(&[0; 32]),
            Err(SignatureError::InvalidSecretKey)
        ));
        assert!(matches!(
            TenantSigner::from_bytes(&[0xff; 32]),
            Err(SignatureError::InvalidSecretKey)
        ));
    }

    #[test]
    fn generate_uses_the_rng() {
        struct Counter(u8);
        impl rand_core::RngCore for Counter {
            fn next_u32(&mut self) -> u32 {
                rand_core::impls::next_u32_via_fill(self)
            }
            fn next_u64(&mut self) -> u64 {
                rand_core::impls::next_u64_via_fill(self)
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for b in dest {
                    self.0 = self.0.wrapping_add(1);
                    *b = self.0;
                }
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Counter {}
        let a = HostSigningKey::generate(&mut Counter(0)).verifying_key();
        let b = HostSigningKey::generate(&mut Counter(0)).verifying_key();
        let c = HostSigningKey::generate(&mut Counter(7)).verifying_key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            TenantSigner::generate(&mut Counter(0)).address(),
            TenantSigner::generate(&mut Counter(9)).address()
        );
    }

    #[test]
    fn tenant_signature_round_trip() {
        let t = tenant();
        let sig = t.sign_prehash(&digest());
        assert!(sig.0[64] == 27 || sig.0[64] == 28);
        let parsed = k1::Signature::from_slice(&sig.0[..64]).unwrap();
        assert!(parsed.normalize_s().is_none());
        assert_eq!(recover_tenant(&digest(), &sig).unwrap(), t.address());
        assert_eq!(t.address().to_string().len(), 42);
    }

    #[test]
    fn tenant_signature_high_s_is_rejected() {
        let t = tenant();
        let sig = t.sign_prehash(&digest());
        let parsed = k1::Signature::from_slice(&sig.0[..64]).unwrap();
        let high = k1::Signature::from_scalars(parsed.r().to_bytes(), parsed.s().neg().to_bytes())
            .unwrap();
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&high.to_bytes());
        // Flip v as well: this is the malleated twin that ecrecover would map to the same address.
        bytes[64] = if sig.0[64] == 27 { 28 } else { 27 };
        assert!(matches!(
            recover_tenant(&digest(), &TenantSignature(bytes)),
            Err(SignatureError::HighS)
        ));
    }

    #[test]
    fn tenant_signature_bad_v() {
        let mut sig = tenant().sign_prehash(&digest());
        sig.0[64] = 1;
        assert!(matches!(
            recover_tenant(&digest(), &sig),
            Err(SignatureError::InvalidRecoveryByte(1))
        ));
    }

    #[test]
    fn tenant_signature_flipped_bit_recovers_someone_else() {
        let t = tenant();
        let state = ChannelState::open(B256([9; 32]), 100, t.address(), Address([8; 20]));
        let mut signed = SignedChannelState {
            tenant_signature: t.sign_state(&state, &DOMAIN),
            state,
            host_signature: None,
        };
        assert_eq!(signed.verify_tenant(&DOMAIN).unwrap(), t.address());
        signed.tenant_signature.0[40] ^= 1;
        assert!(matches!(
            signed.verify_tenant(&DOMAIN),
            Err(SignatureError::UnexpectedSigner)
        ));
    }

    #[test]
    fn tenant_signature_wrong_domain() {
        let t = tenant();
        let state = ChannelState::open(B256([9; 32]), 100, t.address(), Address([8; 20]));
        let signed = SignedChannelState {
            tenant_signature: t.sign_state(&state, &DOMAIN),
            state,
            host_signature: None,
        };
        let other = Domain {
            chain_id: 1,
            ..DOMAIN
        };
        assert!(matches!(
            signed.verify_tenant(&other),
            Err(SignatureError::UnexpectedSigner)
        ));
    }

    #[test]
    fn host_cosignature() {
        let h = host();
        let t = tenant();
        let state = ChannelState::open(B256([9; 32]), 100, t.address(), Address([0xa0; 20]));
        let mut signed = SignedChannelState {
            tenant_signature: t.sign_state(&state, &DOMAIN),
            host_signature: None,
            state,
        };
        assert_eq!(signed.verify_host(&h.verifying_key(), &DOMAIN), Ok(false));
        signed.host_signature = Some(h.cosign_state(&signed.state, &DOMAIN));
        assert_eq!(signed.verify_host(&h.verifying_key(), &DOMAIN), Ok(true));
        let other = HostSigningKey::from_bytes(&[0x13; 32]).unwrap();
        assert_eq!(
            signed.verify_host(&other.verifying_key(), &DOMAIN),
            Err(SignatureError::Mismatch)
        );
        let wrong_domain = Domain {
            chain_id: 5,
            ..DOMAIN
        };
        assert_eq!(
            signed.verify_host(&h.verifying_key(), &wrong_domain),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn recovery_matches_ecdsa_recover_from_prehash() {
        use k256::ecdsa::signature::hazmat::PrehashSigner as _;
        let mut seed = [7u8; 32];
        for i in 0..64u8 {
            seed = keccak(&[&seed[..], &[i]]).0;
            let digest = keccak(&[&seed[..], b"digest"]);
            // A real signature, both parities.
            let key = k1::SigningKey::from_slice(&seed).unwrap();
            let (sig, recid): (k1::Signature, k1::RecoveryId) =
                key.sign_prehash(&digest.0).unwrap();
            let ours = recover_key(&digest, &sig, recid.is_y_odd()).unwrap();
            assert_eq!(&ours, key.verifying_key());
            // Arbitrary low-s scalars (`recover_tenant` rejects high-s first, as k256's verify does): both
            // implementations agree on the key or on failure.
            let mut rs = [0u8; 64];
            rs[..32].copy_from_slice(&seed);
            rs[32..].copy_from_slice(&digest.0);
            if let Ok(sig) = k1::Signature::from_slice(&rs) {
                let sig = sig.normalize_s().unwrap_or(sig);
                for odd in [false, true] {
                    let theirs = k1::VerifyingKey::recover_from_prehash(
                        &digest.0,
                        &sig,
                        k1::RecoveryId::new(odd, false),
                    )
                    .ok();
                    assert_eq!(recover_key(&digest, &sig, odd), theirs);
                }
            }
        }
        // A small r (x = 5): both agree whether or not it is an x-coordinate on the curve.
        let mut rs = [0u8; 64];
        rs[31] = 5;
        rs[63] = 1;
        let sig = k1::Signature::from_slice(&rs).unwrap();
        for odd in [false, true] {
            let theirs = k1::VerifyingKey::recover_from_prehash(
                &[1; 32],
                &sig,
                k1::RecoveryId::new(odd, false),
            )
            .ok();
            assert_eq!(recover_key(&B256([1; 32]), &sig, odd), theirs);
        }
    }
}
