//! Azure vTPM quote from the evidence set: the outcomes az-cvm-vtpm's tests assert, and negatives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use dait_testdata::read;

use dait_verifier::tpm::{self, AkPublic, HclReportKind, QuoteSignature, TpmError, TpmQuoteInput};
use dait_verifier::wire::ParseError;

const QUOTE: &str = "vtpm/kinvolk__azure_tpm_quote.bincode.bin";
const AK: &str = "vtpm/kinvolk__azure_ak_pub.pem";
const NONCE: &[u8] = b"challenge";

fn ak() -> AkPublic {
    AkPublic::from_spki_pem(&String::from_utf8(read(AK)).unwrap()).unwrap()
}

// az-cvm-vtpm test_quote_validation: quote.verify(akpub, b"challenge") passes; test_pcr_values: PCR digest
// matches the PCR values in the container.
#[test]
fn sample_quote_verifies_with_its_nonce_and_pcrs() {
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    assert_eq!(q.signature.len(), 256);
    assert_eq!(q.pcrs.len(), 24);
    let v = tpm::verify_quote(&q.input(), &ak(), NONCE).unwrap();
    assert_eq!(v.extra_data(), NONCE);
    assert_eq!(v.pcrs().len(), 24);
    assert_eq!(v.pcr(0), Some(&q.pcrs[0]));
    assert_eq!(v.pcr(23), Some(&q.pcrs[23]));
}

// az-cvm-vtpm: signature reversed → SignatureMismatch.
#[test]
fn reversed_signature_is_rejected() {
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    let reversed: Vec<u8> = q.signature.iter().rev().copied().collect();
    let input = TpmQuoteInput {
        signature: QuoteSignature::RsaSsaSha256(&reversed),
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::SignatureMismatch)
    ));
}

// az-cvm-vtpm: nonce [1,2,3,4] → NonceMismatch.
#[test]
fn wrong_nonce_is_rejected() {
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    assert!(matches!(
        tpm::verify_quote(&q.input(), &ak(), &[1, 2, 3, 4]),
        Err(TpmError::NonceMismatch)
    ));
}

#[test]
fn flipped_bits_are_rejected_each_with_its_own_error() {
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    // Signature bit.
    let mut sig = q.signature.to_vec();
    sig[100] ^= 1;
    let input = TpmQuoteInput {
        signature: QuoteSignature::RsaSsaSha256(&sig),
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::SignatureMismatch)
    ));
    // A PCR value (the measurement) → the digest no longer matches.
    let mut pcrs = q.pcrs.clone();
    pcrs[4][0] ^= 1;
    let input = TpmQuoteInput {
        pcrs: &pcrs,
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::PcrDigestMismatch)
    ));
    // The qualifying data inside the signed message (the report data) → the signature breaks.
    let mut msg = q.message.to_vec();
    let at = msg.windows(NONCE.len()).position(|w| w == NONCE).unwrap();
    msg[at] ^= 1;
    let input = TpmQuoteInput {
        attest: &msg,
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::SignatureMismatch)
    ));
    // The magic → not TPM-generated.
    let mut msg = q.message.to_vec();
    msg[0] ^= 1;
    let input = TpmQuoteInput {
        attest: &msg,
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::NotTpmGenerated)
    ));
    // The type → not a quote.
    let mut msg = q.message.to_vec();
    msg[5] ^= 1;
    let input = TpmQuoteInput {
        attest: &msg,
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::WrongType)
    ));
}

#[test]
fn missing_pcr_value_is_a_count_mismatch() {
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    let input = TpmQuoteInput {
        pcrs: &q.pcrs[..23],
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::PcrCountMismatch {
            selected: 24,
            supplied: 23
        })
    ));
}

#[test]
fn truncation_at_every_byte_and_trailing_bytes_are_rejected() {
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    for cut in 0..q.message.len() {
        let input = TpmQuoteInput {
            attest: &q.message[..cut],
            ..q.input()
        };
        let err = tpm::verify_quote(&input, &ak(), NONCE).unwrap_err();
        assert!(
            matches!(err, TpmError::Parse(ParseError::Truncated { .. })),
            "cut {cut}: {err:?}"
        );
    }
    let mut longer = q.message.to_vec();
    longer.push(0);
    let input = TpmQuoteInput {
        attest: &longer,
        ..q.input()
    };
    assert!(matches!(
        tpm::verify_quote(&input, &ak(), NONCE),
        Err(TpmError::Parse(ParseError::TrailingBytes { .. }))
    ));
    for cut in 0..bytes.len() {
        assert!(
            tpm::parse_azure_quote(&bytes[..cut]).is_err(),
            "container cut {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        tpm::parse_azure_quote(&longer),
        Err(ParseError::TrailingBytes { .. })
    ));
}

#[test]
fn another_key_does_not_verify() {
    // The HCL report's AK (from a different VM) is not this quote's signer.
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    let hcl = read("snp/kinvolk__azure_hcl_report_snp.bin");
    let hcl_ak = hcl_ak_public(&hcl);
    assert!(matches!(
        tpm::verify_quote(&q.input(), &hcl_ak, NONCE),
        Err(TpmError::SignatureMismatch)
    ));
}

fn hcl_ak_public(hcl: &[u8]) -> AkPublic {
    use base64::Engine as _;
    let start = hcl.windows(8).position(|w| w == b"{\"keys\":").unwrap();
    let end = start
        + hcl[start..]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(hcl.len() - start);
    let json: serde_json::Value = serde_json::from_slice(&hcl[start..end]).unwrap();
    let k = &json["keys"][0];
    let dec = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let n = rsa::BigUint::from_bytes_be(&dec(k["n"].as_str().unwrap()));
    let e = rsa::BigUint::from_bytes_be(&dec(k["e"].as_str().unwrap()));
    AkPublic::Rsa(rsa::RsaPublicKey::new(n, e).unwrap())
}

// The HCL reports bind their variable data (report_data = SHA-256 of it) and their HCLAkPub; the quote's AK in
// this sample comes from another VM, so the binding to the sample quote's AK does not hold.
#[test]
fn hcl_reports_bind_their_own_ak_but_not_the_sample_quotes_ak() {
    for (file, kind) in [
        ("snp/kinvolk__azure_hcl_report_snp.bin", HclReportKind::Snp),
        ("vtpm/kinvolk__azure_hcl_report_tdx.bin", HclReportKind::Tdx),
    ] {
        let hcl = read(file);
        let own = hcl_ak_public(&hcl);
        let b = tpm::verify_hcl_ak_binding(&hcl, &own).unwrap();
        assert_eq!(b.kind, kind);
        assert!(
            matches!(
                tpm::verify_hcl_ak_binding(&hcl, &ak()),
                Err(TpmError::AkMismatch)
            ),
            "{file}"
        );
        // Changing the variable data breaks the report_data binding.
        let mut changed = hcl.clone();
        let at = changed.windows(8).position(|w| w == b"{\"keys\":").unwrap();
        changed[at + 10] ^= 1;
        assert!(
            matches!(
                tpm::verify_hcl_ak_binding(&changed, &own),
                Err(TpmError::ReportDataMismatch)
            ),
            "{file}"
        );
    }
}

#[test]
fn tpm2b_public_and_tpmt_signature_forms_verify() {
    // The evidence set has no TPM2B_PUBLIC or TPMT_SIGNATURE bytes; build them from the sample's AK and
    // signature per TPM 2.0 Part 2 (§12.2.5, §11.3.4) and check they verify the same quote.
    use rsa::traits::PublicKeyParts as _;
    let bytes = read(QUOTE);
    let q = tpm::parse_azure_quote(&bytes).unwrap();
    let AkPublic::Rsa(key) = ak() else {
        panic!("RSA AK")
    };
    let n = key.n().to_bytes_be();
    let mut area = Vec::new();
    area.extend_from_slice(&tpm::ALG_RSA.to_be_bytes());
    area.extend_from_slice(&tpm::ALG_SHA256.to_be_bytes());
    area.extend_from_slice(&0x0005_0072u32.to_be_bytes());
    area.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    area.extend_from_slice(&tpm::ALG_NULL.to_be_bytes()); // symmetric
    area.extend_from_slice(&tpm::ALG_RSASSA.to_be_bytes()); // scheme
    area.extend_from_slice(&tpm::ALG_SHA256.to_be_bytes());
    area.extend_from_slice(&2048u16.to_be_bytes());
    area.extend_from_slice(&0u32.to_be_bytes()); // default exponent
    area.extend_from_slice(&(n.len() as u16).to_be_bytes());
    area.extend_from_slice(&n);
    let mut public = (area.len() as u16).to_be_bytes().to_vec();
    public.extend_from_slice(&area);
    let ak2 = AkPublic::from_tpm2b_public(&public).unwrap();
    assert_eq!(ak2, ak());

    let mut sig = Vec::new();
    sig.extend_from_slice(&tpm::ALG_RSASSA.to_be_bytes());
    sig.extend_from_slice(&tpm::ALG_SHA256.to_be_bytes());
    sig.extend_from_slice(&(q.signature.len() as u16).to_be_bytes());
    sig.extend_from_slice(q.signature);
    let input = TpmQuoteInput {
        signature: QuoteSignature::Tpmt(&sig),
        ..q.input()
    };
    tpm::verify_quote(&input, &ak2, NONCE).unwrap();

    public.push(0);
    assert!(matches!(
        AkPublic::from_tpm2b_public(&public),
        Err(TpmError::Parse(ParseError::TrailingBytes { .. }))
    ));
}
