//! The tenant's secp256k1 wallet key, which signs channel states (PROTOCOL.md §4, §5).
//!
//! Stored as 64 hex characters in a file readable only by its owner; created on first use.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use dait_chain_client::{Address, TenantSigner};
use rand::RngCore as _;
use zeroize::Zeroizing;

/// Why the wallet key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The file exists but does not hold 32 hex-encoded bytes of a valid secp256k1 scalar.
    #[error("wallet key file {path} is not 64 hex characters of a valid secp256k1 key")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("wallet key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A secp256k1 signing key. Not `Debug`-printable beyond its address; zeroized on drop (by `k256`).
pub struct Wallet {
    key: TenantSigner,
    /// The same key as bytes, for the EVM client's transaction signer (feature `chain`).
    #[cfg_attr(not(feature = "chain"), allow(dead_code))]
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// A fresh random key, held in memory only.
    pub fn generate() -> Self {
        let (key, secret) = Self::generate_with_secret();
        Self { key, secret }
    }

    /// A fresh key and its secret scalar, for writing to the key file.
    fn generate_with_secret() -> (TenantSigner, Zeroizing<[u8; 32]>) {
        loop {
            let mut secret = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(secret.as_mut_slice());
            // A uniformly random 32-byte string is a valid scalar except with probability ~2^-128.
            if let Ok(key) = TenantSigner::from_bytes(&secret) {
                return (key, secret);
            }
        }
    }

    /// Loads the key from `path`, creating it (mode 0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, WalletError> {
        let io = |source| WalletError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let mut bytes = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), bytes.as_mut_slice()).map_err(|_| {
                    WalletError::Malformed {
                        path: path.to_path_buf(),
                    }
                })?;
                let key = TenantSigner::from_bytes(&bytes).map_err(|_| WalletError::Malformed {
                    path: path.to_path_buf(),
                })?;
                Ok(Self { key, secret: bytes })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, secret) = Self::generate_with_secret();
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    options.mode(0o600);
                }
                let mut file = options.open(path).map_err(io)?;
                let encoded = Zeroizing::new(hex::encode(secret.as_slice()));
                file.write_all(encoded.as_bytes()).map_err(io)?;
                file.write_all(b"\n").map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self { key, secret })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The signing key.
    pub(crate) fn signer(&self) -> &TenantSigner {
        &self.key
    }

    /// The secret scalar, for the EVM client that signs the tenant's transactions (feature `chain`).
    #[cfg(feature = "chain")]
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The EVM address of this key.
    pub fn address(&self) -> Address {
        self.key.address()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn created_key_loads_back() {
        let dir = std::env::temp_dir().join(format!("dait-wallet-{}", std::process::id()));
        let path = dir.join("wallet.key");
        let _ = std::fs::remove_file(&path);
        let a = Wallet::load_or_create(&path).unwrap();
        let b = Wallet::load_or_create(&path).unwrap();
        assert_eq!(a.address(), b.address());
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(
            Wallet::load_or_create(&path),
            Err(WalletError::Malformed { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
