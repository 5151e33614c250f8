//! NVIDIA reference integrity manifests (RIMs): TCG RIM / ISO SWID tags with an enveloped XML-DSig signature.
//!
//! [`verify_rim`] checks the signature (reference digest over the canonical document without its `Signature`,
//! then the signature over the canonical `SignedInfo`, with the signer certificate from `KeyInfo`), the
//! signer chain in `KeyInfo` up to a pinned root at an injected time, and returns the golden measurements.
//! Only the shapes NVIDIA RIMs use are accepted: one `Reference` with `URI=""`, the enveloped-signature
//! transform followed by a canonicalisation, ECDSA (raw r‖s) or RSA PKCS#1 v1.5 signatures.

pub mod c14n;
pub mod xml;

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::UnixTime;
use crate::x509::{self as x, TrustAnchor, X509Error};
use c14n::{Bindings, Mode};
use xml::{Element, XmlError};

/// ISO/IEC 19770-2:2015 SWID namespace.
pub const NS_SWID: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// XML-DSig namespace.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Namespace of the SHA-384 hash attributes (`Hash0`, `Hash1`, ...) of RIM measurement resources.
pub const NS_SHA384: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
/// The most alternatives per measurement.
pub const MAX_ALTERNATIVES: usize = 16;
/// The most measurement resources per RIM.
pub const MAX_MEASUREMENTS: usize = 256;

const ALG_C14N10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ALG_C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ALG_ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Why a RIM was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RimError {
    /// The signer chain in `KeyInfo` is invalid (signature, names, validity at `now`, root).
    #[error("RIM signer chain")]
    Chain(#[source] X509Error),
    /// The reference digest differs from the canonical document's digest: the content was changed.
    #[error("RIM content digest mismatch")]
    DigestMismatch,
    /// A required element or attribute is missing or malformed.
    #[error("RIM is missing or has a malformed {0}")]
    Malformed(&'static str),
    /// The XML-DSig signature over SignedInfo does not verify with the signer certificate.
    #[error("RIM signature does not verify")]
    SignatureMismatch,
    /// An algorithm or signature shape this module does not implement.
    #[error("unsupported XML-DSig {0}")]
    Unsupported(&'static str),
    /// The XML itself was refused.
    #[error("RIM XML")]
    Xml(#[source] XmlError),
}

/// One golden measurement of a RIM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenMeasurement {
    /// RIM index (0-based; SPDM block index − 1).
    pub index: u16,
    /// Whether the RIM asks for this index to be checked.
    pub active: bool,
    /// Accepted values (`Hash0`, `Hash1`, ...).
    pub alternatives: Vec<Vec<u8>>,
    /// The resource name (e.g. `HashedMeasurement_35_GSP`).
    pub name: String,
}

/// A parsed RIM (signature not checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rim {
    /// `SoftwareIdentity/@tagId`.
    pub tag_id: String,
    /// `Meta/@colloquialVersion`: the driver or VBIOS version it describes.
    pub version: String,
    /// `Meta/@product`, e.g. `GH100`.
    pub product: String,
    /// Golden measurements in document order.
    pub measurements: Vec<GoldenMeasurement>,
}

/// A RIM whose signature and signer chain verified. Only [`verify_rim`] constructs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRim {
    rim: Rim,
    signer_subject: String,
}

impl VerifiedRim {
    /// The version the RIM describes.
    pub fn version(&self) -> &str {
        &self.rim.version
    }
    /// The golden measurements.
    pub fn measurements(&self) -> &[GoldenMeasurement] {
        &self.rim.measurements
    }
    /// The whole parsed RIM.
    pub fn rim(&self) -> &Rim {
        &self.rim
    }
    /// The signer certificate's subject (RFC 4514 form).
    pub fn signer_subject(&self) -> &str {
        &self.signer_subject
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| {
            let txt = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(txt, 16).ok()
        })
        .collect()
}

fn extract(root: &Element) -> Result<Rim, RimError> {
    if root.ns.as_deref() != Some(NS_SWID) || root.local != "SoftwareIdentity" {
        return Err(RimError::Malformed("SoftwareIdentity root"));
    }
    let tag_id = root
        .attr("tagId")
        .ok_or(RimError::Malformed("tagId"))?
        .to_owned();
    let meta = root
        .child(NS_SWID, "Meta")
        .ok_or(RimError::Malformed("Meta"))?;
    let version = meta
        .attr("colloquialVersion")
        .ok_or(RimError::Malformed("colloquialVersion"))?
        .to_owned();
    let product = meta.attr("product").unwrap_or_default().to_owned();
    let payload = root
        .child(NS_SWID, "Payload")
        .ok_or(RimError::Malformed("Payload"))?;
    let mut measurements = Vec::new();
    for res in payload
        .elements()
        .filter(|e| e.ns.as_deref() == Some(NS_SWID) && e.local == "Resource")
    {
        if res.attr("type") != Some("Measurement") {
            continue;
        }
        if measurements.len() >= MAX_MEASUREMENTS {
            return Err(RimError::Malformed("Payload (too many measurements)"));
        }
        let index: u16 = res
            .attr("index")
            .and_then(|v| v.parse().ok())
            .ok_or(RimError::Malformed("Resource/@index"))?;
        let active = match res.attr("active") {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => return Err(RimError::Malformed("Resource/@active")),
        };
        let count: usize = res
            .attr("alternatives")
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=MAX_ALTERNATIVES).contains(n))
            .ok_or(RimError::Malformed("Resource/@alternatives"))?;
        let mut alternatives = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("Hash{i}");
            let v = res
                .attrs
                .iter()
                .find(|a| a.ns.as_deref() == Some(NS_SHA384) && a.local == name)
                .ok_or(RimError::Malformed("Resource/@Hash"))?;
            let bytes = decode_hex(&v.value)
                .filter(|b| b.len() == 48)
                .ok_or(RimError::Malformed("Resource/@Hash"))?;
            alternatives.push(bytes);
        }
        let name = res.attr("name").unwrap_or_default().to_owned();
        measurements.push(GoldenMeasurement {
            index,
            active,
            alternatives,
            name,
        });
    }
    Ok(Rim {
        tag_id,
        version,
        product,
        measurements,
    })
}

/// Parses a RIM's content without checking its signature (for inspection and tests).
pub fn parse_rim(bytes: &[u8]) -> Result<Rim, RimError> {
    extract(&xml::parse(bytes).map_err(RimError::Xml)?)
}

fn mode_of(alg: &str) -> Result<Mode, RimError> {
    match alg {
        ALG_C14N10 | ALG_C14N11 => Ok(Mode::Inclusive),
        ALG_EXC_C14N => Ok(Mode::Exclusive),
        _ => Err(RimError::Unsupported("canonicalization method")),
    }
}

fn digest_by(alg: &str, data: &[u8]) -> Result<Vec<u8>, RimError> {
    match alg {
        "http://www.w3.org/2001/04/xmlenc#sha256" => Ok(Sha256::digest(data).to_vec()),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Ok(Sha384::digest(data).to_vec()),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Ok(Sha512::digest(data).to_vec()),
        _ => Err(RimError::Unsupported("digest method")),
    }
}

fn ds<'e>(el: &'e Element, local: &'static str) -> Result<&'e Element, RimError> {
    el.child(NS_DSIG, local).ok_or(RimError::Malformed(local))
}

fn alg<'e>(el: &'e Element, what: &'static str) -> Result<&'e str, RimError> {
    el.attr("Algorithm").ok_or(RimError::Malformed(what))
}

fn root_bindings(root: &Element) -> Bindings {
    root.ns_decls.iter().cloned().collect()
}

/// Verifies a RIM's enveloped XML-DSig signature and its signer chain to `anchor` at `now` (Unix seconds),
/// then returns its content.
pub fn verify_rim(
    bytes: &[u8],
    anchor: &TrustAnchor,
    now: UnixTime,
) -> Result<VerifiedRim, RimError> {
    verify_rim_cached(bytes, anchor, now, &mut x::SignatureCache::default())
}

/// [`verify_rim`], remembering verified certificate signatures in `cache`: the driver and VBIOS RIMs of a
/// GPU (and of every GPU of a machine) are signed under the same chain, whose signatures then verify once
/// per verification.
pub fn verify_rim_cached(
    bytes: &[u8],
    anchor: &TrustAnchor,
    now: UnixTime,
    cache: &mut x::SignatureCache,
) -> Result<VerifiedRim, RimError> {
    let now = now.as_secs();
    let root = xml::parse(bytes).map_err(RimError::Xml)?;
    let mut sigs = root
        .elements()
        .filter(|e| e.ns.as_deref() == Some(NS_DSIG) && e.local == "Signature");
    let signature = sigs.next().ok_or(RimError::Malformed("Signature"))?;
    if sigs.next().is_some() {
        return Err(RimError::Unsupported("more than one Signature"));
    }
    let signed_info = ds(signature, "SignedInfo")?;
    let si_mode = mode_of(alg(
        ds(signed_info, "CanonicalizationMethod")?,
        "CanonicalizationMethod",
    )?)?;
    let sig_alg = alg(ds(signed_info, "SignatureMethod")?, "SignatureMethod")?;
    let mut refs = signed_info
        .elements()
        .filter(|e| e.ns.as_deref() == Some(NS_DSIG) && e.local == "Reference");
    let reference = refs.next().ok_or(RimError::Malformed("Reference"))?;
    if refs.next().is_some() {
        return Err(RimError::Unsupported("more than one Reference"));
    }
    if reference.attr("URI") != Some("") {
        return Err(RimError::Unsupported(
            "Reference URI other than the whole document",
        ));
    }
    let transforms: Vec<&str> = match reference.child(NS_DSIG, "Transforms") {
        Some(t) => t
            .elements()
            .filter(|e| e.ns.as_deref() == Some(NS_DSIG) && e.local == "Transform")
            .map(|e| alg(e, "Transform"))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let ref_mode = match transforms.as_slice() {
        [ALG_ENVELOPED] => Mode::Inclusive,
        [ALG_ENVELOPED, c] => mode_of(c)?,
        _ => return Err(RimError::Unsupported("transform list")),
    };
    let digest_alg = alg(ds(reference, "DigestMethod")?, "DigestMethod")?;
    let expected_digest = x::decode_base64_lenient(&ds(reference, "DigestValue")?.text())
        .ok_or(RimError::Malformed("DigestValue"))?;

    // 1. Reference: the canonical document without the Signature element.
    let canonical_doc = c14n::canonicalize(&root, &Bindings::new(), ref_mode, Some(signature));
    if digest_by(digest_alg, canonical_doc.as_bytes())? != expected_digest {
        return Err(RimError::DigestMismatch);
    }

    // 2. Signature over the canonical SignedInfo, whose in-scope namespaces come from Signature and the root.
    let mut inherited = root_bindings(&root);
    inherited.extend(signature.ns_decls.iter().cloned());
    let canonical_si = c14n::canonicalize(signed_info, &inherited, si_mode, None);
    let sig_value = x::decode_base64_lenient(&ds(signature, "SignatureValue")?.text())
        .ok_or(RimError::Malformed("SignatureValue"))?;

    let x509_data = ds(ds(signature, "KeyInfo")?, "X509Data")?;
    let mut chain = Vec::new();
    for (i, c) in x509_data
        .elements()
        .filter(|e| e.ns.as_deref() == Some(NS_DSIG) && e.local == "X509Certificate")
        .enumerate()
    {
        if i >= x::MAX_CHAIN_CERTS {
            return Err(RimError::Chain(X509Error::TooLarge {
                what: "chain length",
            }));
        }
        let der =
            x::decode_base64_lenient(&c.text()).ok_or(RimError::Malformed("X509Certificate"))?;
        chain.push(x::parse_der(&der, i).map_err(RimError::Chain)?);
    }
    let signer = chain
        .first()
        .ok_or(RimError::Malformed("X509Certificate"))?;
    verify_xml_signature(sig_alg, signer, canonical_si.as_bytes(), &sig_value)?;
    x::verify_chain_cached(&chain, anchor, now, cache).map_err(RimError::Chain)?;

    let rim = extract(&root)?;
    Ok(VerifiedRim {
        rim,
        signer_subject: signer.tbs_certificate.subject.to_string(),
    })
}

fn verify_xml_signature(
    sig_alg: &str,
    signer: &x509_cert::Certificate,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), RimError> {
    let spki = &signer.tbs_certificate.subject_public_key_info;
    let (ecdsa_hash, rsa_oid) = match sig_alg {
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => (Some(x::EcdsaHash::Sha384), None),
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => (Some(x::EcdsaHash::Sha256), None),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => (None, Some(x::OID_RSA_SHA256)),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => (None, Some(x::OID_RSA_SHA384)),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => (None, Some(x::OID_RSA_SHA512)),
        _ => return Err(RimError::Unsupported("signature method")),
    };
    let result = match (ecdsa_hash, rsa_oid) {
        (Some(h), _) => {
            let (curve, point) = x::ec_key(spki).map_err(RimError::Chain)?;
            x::verify_ecdsa(&curve, point, msg, h, x::EcdsaSig::Raw(sig))
        }
        (None, Some(oid)) => x::verify_signature(spki, &oid, msg, sig),
        (None, None) => return Err(RimError::Unsupported("signature method")),
    };
    result.map_err(|e| match e {
        X509Error::SignatureMismatch => RimError::SignatureMismatch,
        other => RimError::Chain(other),
    })
}

/// Canonical form of a RIM document without its signature (the bytes the reference digest covers), for
/// tests and diagnostics.
pub fn canonical_content(bytes: &[u8]) -> Result<String, RimError> {
    let root = xml::parse(bytes).map_err(RimError::Xml)?;
    let sig = root
        .elements()
        .find(|e| e.ns.as_deref() == Some(NS_DSIG) && e.local == "Signature");
    Ok(c14n::canonicalize(
        &root,
        &Bindings::new(),
        Mode::Inclusive,
        sig,
    ))
}
