//! Collateral from local files: a JSON bundle, or a directory of the files Intel's PCS serves. The only
//! file-system access of [`TdxCollateral`]; what it reads goes through the pure constructors.

use std::path::{Path, PathBuf};

use super::{CollateralError, PcsFiles, TdxCollateral};

/// Why collateral could not be loaded from a file or directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// More than one file of the directory matches a role.
    #[error("{}: more than one {role} file", dir.display())]
    Ambiguous {
        /// The directory.
        dir: PathBuf,
        /// What the file holds.
        role: &'static str,
    },
    /// The files were read but are not valid collateral.
    #[error("{}: not valid collateral", path.display())]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: CollateralError,
    },
    /// A file or directory could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No file of the directory matches a required role.
    #[error("{}: no {role} file", dir.display())]
    Missing {
        /// The directory.
        dir: PathBuf,
        /// What the file holds.
        role: &'static str,
    },
}

/// A role of a file in a PCS directory, recognised by its lower-cased name.
struct Role {
    what: &'static str,
    matches: fn(&str) -> bool,
}

const TCB_INFO: Role = Role {
    what: "TCB Info JSON",
    matches: |n| n.ends_with(".json") && n.contains("tcb") && n.contains("info"),
};
const QE_IDENTITY: Role = Role {
    what: "QE Identity JSON",
    matches: |n| n.ends_with(".json") && n.contains("qe") && n.contains("identity"),
};
const PCK_CRL: Role = Role {
    what: "PCK CRL",
    matches: |n| n.ends_with(".der") && n.contains("pck") && n.contains("crl"),
};
const ROOT_CRL: Role = Role {
    what: "root CA CRL",
    matches: |n| n.ends_with(".der") && n.contains("root") && n.contains("crl"),
};
const TCB_CHAIN: Role = Role {
    what: "TCB Info issuer chain",
    matches: |n| {
        n.ends_with(".pem")
            && (n.contains("tcb_info_issuer")
                || n.contains("tcb_signing_chain")
                || n.contains("tcb-info-issuer"))
    },
};
const QE_CHAIN: Role = Role {
    what: "QE Identity issuer chain",
    matches: |n| {
        n.ends_with(".pem")
            && (n.contains("qe_identity_issuer") || n.contains("enclave-identity-issuer"))
    },
};
const CRL_CHAIN: Role = Role {
    what: "PCK CRL issuer chain",
    matches: |n| {
        n.ends_with(".pem") && n.contains("pck") && (n.contains("crl") || n.contains("chain"))
    },
};

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })
}

impl TdxCollateral {
    /// Loads collateral from `path`: a directory of PCS files ([`TdxCollateral::from_pcs_dir`]), or else
    /// a JSON bundle ([`TdxCollateral::from_bundle_json`]).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        if path.is_dir() {
            return Self::from_pcs_dir(path);
        }
        Self::from_bundle_json(&read(path)?).map_err(|source| LoadError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Loads the PCS files of a directory, each recognised by its name (case ignored): TCB Info JSON
    /// (`*tcb*info*.json`), QE Identity JSON (`*qe*identity*.json`), PCK CRL (`*pck*crl*.der`), root CA CRL
    /// (`*root*crl*.der`), and the issuer chains in PEM: TCB Info (`*tcb_info_issuer*`,
    /// `*tcb-info-issuer*` or `*tcb_signing_chain*`), QE Identity (`*qe_identity_issuer*` or
    /// `*enclave-identity-issuer*`; default: the TCB Info chain) and PCK CRL (`*pck*` with `crl` or
    /// `chain`; default: none). Each role takes exactly one file.
    pub fn from_pcs_dir(dir: &Path) -> Result<Self, LoadError> {
        let io = |source| LoadError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut names: Vec<(PathBuf, String)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                let name = name.to_ascii_lowercase();
                names.push((path, name));
            }
        }
        let find = |role: &Role| -> Result<Option<Vec<u8>>, LoadError> {
            let mut hits = names.iter().filter(|(_, n)| (role.matches)(n));
            match (hits.next(), hits.next()) {
                (None, _) => Ok(None),
                (Some((path, _)), None) => read(path).map(Some),
                (Some(_), Some(_)) => Err(LoadError::Ambiguous {
                    dir: dir.to_owned(),
                    role: role.what,
                }),
            }
        };
        let require = |role: &Role| -> Result<Vec<u8>, LoadError> {
            find(role)?.ok_or_else(|| LoadError::Missing {
                dir: dir.to_owned(),
                role: role.what,
            })
        };
        let tcb = require(&TCB_INFO)?;
        let qe = require(&QE_IDENTITY)?;
        let pck_crl = require(&PCK_CRL)?;
        let root_crl = require(&ROOT_CRL)?;
        let tcb_chain = require(&TCB_CHAIN)?;
        let qe_chain = find(&QE_CHAIN)?.unwrap_or_else(|| tcb_chain.clone());
        let crl_chain = find(&CRL_CHAIN)?.unwrap_or_default();
        let files = PcsFiles {
            tcb_info_json: &tcb,
            qe_identity_json: &qe,
            pck_crl_der: &pck_crl,
            root_ca_crl_der: &root_crl,
            tcb_info_issuer_chain_pem: &tcb_chain,
            qe_identity_issuer_chain_pem: &qe_chain,
            pck_crl_issuer_chain_pem: &crl_chain,
        };
        Self::from_pcs_files(&files).map_err(|source| LoadError::Invalid {
            path: dir.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dait-verifier-pcs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_or_doubled_role_is_named() {
        let dir = temp_dir("roles");
        std::fs::write(dir.join("tcb_info.json"), b"{}").unwrap();
        assert!(matches!(
            TdxCollateral::from_pcs_dir(&dir),
            Err(LoadError::Missing {
                role: "QE Identity JSON",
                ..
            })
        ));
        std::fs::write(dir.join("TCBInfo-2.json"), b"{}").unwrap();
        let r = TdxCollateral::from_pcs_dir(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            r,
            Err(LoadError::Ambiguous {
                role: "TCB Info JSON",
                ..
            })
        ));
    }

    #[test]
    fn files_that_are_not_collateral_are_invalid() {
        let dir = temp_dir("invalid");
        for name in [
            "tcb_info.json",
            "qe_identity.json",
            "pck_crl.der",
            "root_crl.der",
            "tcb_info_issuer_chain.pem",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let r = TdxCollateral::from_pcs_dir(&dir);
        let file = TdxCollateral::load(&dir.join("tcb_info.json"));
        let none = TdxCollateral::load(&dir.join("absent.json"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            r,
            Err(LoadError::Invalid {
                source: CollateralError::Json { .. },
                ..
            })
        ));
        assert!(matches!(file, Err(LoadError::Invalid { .. })));
        assert!(matches!(none, Err(LoadError::Io { .. })));
    }
}
