//! P-256 ECDSA signing with a precomputed basepoint table (`std` builds only).
//!
//! `p256` 0.13 computes the nonce point `R = k×G` with its generic variable-base ladder (256 doublings and 64
//! additions). Here `k×G` is a fixed-base comb instead: 64 rows of the 16 multiples `j × 16^i × G` (64 KiB of
//! affine points, built once on first use), so `k×G` is 64 mixed additions, each of one row entry selected in
//! constant time over the whole row. Everything else is the `ecdsa` crate's RFC 6979 signing equation on the
//! same `p256` field and scalar arithmetic, so signatures are byte-identical to
//! `p256::ecdsa::SigningKey::sign_prehash` (tested below against it and by the protocol vectors).

use std::sync::OnceLock;

use p256::ecdsa as r1;
use p256::elliptic_curve::ff::{Field as _, PrimeField as _};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::subtle::{ConditionallySelectable as _, ConstantTimeEq as _};
use p256::elliptic_curve::{Curve as _, FieldBytesEncoding};
use p256::{AffinePoint, FieldBytes, NistP256, ProjectivePoint, Scalar, U256};
use zeroize::Zeroize as _;

/// Rows of the comb: one per 4-bit window of a 256-bit scalar.
const ROWS: usize = 64;

type Row = [AffinePoint; 16];

fn table() -> &'static [Row] {
    static TABLE: OnceLock<Vec<Row>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rows = Vec::with_capacity(ROWS);
        // base = 16^i × G
        let mut base = ProjectivePoint::GENERATOR;
        for _ in 0..ROWS {
            let mut multiples = [ProjectivePoint::IDENTITY; 16];
            let mut acc = ProjectivePoint::IDENTITY;
            for m in multiples.iter_mut().skip(1) {
                acc += base;
                *m = acc;
            }
            rows.push(multiples.map(|p| p.to_affine()));
            base = acc + base;
        }
        rows
    })
}

/// `k×G` by the comb; constant time in `k` (every row is scanned in full, additions are complete formulas).
pub(crate) fn mul_generator(k: &Scalar) -> ProjectivePoint {
    let bytes = k.to_repr();
    let mut acc = ProjectivePoint::IDENTITY;
    for (i, row) in table().iter().enumerate() {
        // Window i is bits 4i..4i+4 of the big-endian scalar.
        let byte = bytes.get(31 - i / 2).copied().unwrap_or_default();
        let nibble = (byte >> (4 * (i % 2))) & 0x0f;
        let mut t = AffinePoint::IDENTITY;
        for (j, p) in row.iter().enumerate().skip(1) {
            t.conditional_assign(p, (j as u8).ct_eq(&nibble));
        }
        acc += t;
    }
    acc
}

/// RFC 6979 deterministic ECDSA over a 32-byte prehash (not yet low-s normalised); `None` only if the
/// signing equation yields a zero `r` or `s` (probability ~2^-256). The nonce and its inverse are zeroized.
pub(crate) fn sign_prehash(key: &r1::SigningKey, prehash: &[u8; 32]) -> Option<r1::Signature> {
    let d: &Scalar = key.as_nonzero_scalar().as_ref();
    let z = FieldBytes::from(*prehash);
    let k_bytes = rfc6979::generate_k::<sha2::Sha256, _>(
        &d.to_repr(),
        &FieldBytesEncoding::<NistP256>::encode_field_bytes(&NistP256::ORDER),
        &z,
        &[],
    );
    let mut k_bytes: [u8; 32] = k_bytes.into();
    let k = Option::<Scalar>::from(Scalar::from_repr(k_bytes.into()));
    k_bytes.zeroize();
    let mut k = k?;
    if bool::from(k.is_zero()) {
        return None;
    }
    let k_inv = Option::<Scalar>::from(k.invert());
    let big_r = mul_generator(&k).to_affine();
    k.zeroize();
    let mut k_inv = k_inv?;
    let r = <Scalar as Reduce<U256>>::reduce_bytes(&big_r.x());
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&z);
    let s = k_inv * (z + r * d);
    k_inv.zeroize();
    r1::Signature::from_scalars(r, s).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;

    #[test]
    fn comb_matches_generic_multiplication() {
        let mut k = Scalar::ONE;
        for step in 0..200u64 {
            assert_eq!(
                mul_generator(&k).to_affine(),
                (ProjectivePoint::GENERATOR * k).to_affine()
            );
            k = k * Scalar::from(0x9e37_79b9_7f4a_7c15u64) + Scalar::from(step);
        }
        assert_eq!(mul_generator(&Scalar::ZERO), ProjectivePoint::IDENTITY);
        assert_eq!(
            mul_generator(&-Scalar::ONE).to_affine(),
            (-ProjectivePoint::GENERATOR).to_affine()
        );
    }

    #[test]
    fn signatures_match_p256_sign_prehash() {
        for i in 1..=64u8 {
            let mut secret = [i; 32];
            secret[0] = 0x42;
            let key = r1::SigningKey::from_slice(&secret).unwrap();
            let digest: [u8; 32] = core::array::from_fn(|j| (j as u8).wrapping_mul(i) ^ 0xa5);
            let ours = sign_prehash(&key, &digest).unwrap();
            let theirs: r1::Signature = key.sign_prehash(&digest).unwrap();
            assert_eq!(ours, theirs, "key {i}");
        }
    }
}
