//! The TCB status a quote's collateral grades the platform with.

/// TCB status of the platform as the collateral grades it (Intel PCS TCB Info `tcbStatus`, converged with
/// the QE Identity and, for TDX 1.5, the TDX module status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Configuration and software hardening are needed.
    ConfigurationAndSwHardeningNeeded,
    /// Platform configuration is needed.
    ConfigurationNeeded,
    /// The TCB is out of date.
    OutOfDate,
    /// The TCB is out of date and configuration is needed.
    OutOfDateConfigurationNeeded,
    /// The TCB is revoked (dcap-qvl refuses these outright; kept for completeness).
    Revoked,
    /// Software hardening is needed.
    SwHardeningNeeded,
    /// TDX 1.5: launched on an out-of-date TCB whose current TCB is up to date; relaunch advised.
    TdRelaunchAdvised,
    /// TDX 1.5: relaunch advised, and configuration is needed.
    TdRelaunchAdvisedConfigurationNeeded,
    /// Up to date.
    UpToDate,
}

impl TcbStatus {
    /// Every status, in declaration order: the one list that names, parses and offers them.
    pub const ALL: [Self; 9] = [
        Self::ConfigurationAndSwHardeningNeeded,
        Self::ConfigurationNeeded,
        Self::OutOfDate,
        Self::OutOfDateConfigurationNeeded,
        Self::Revoked,
        Self::SwHardeningNeeded,
        Self::TdRelaunchAdvised,
        Self::TdRelaunchAdvisedConfigurationNeeded,
        Self::UpToDate,
    ];

    /// The PCS spelling (as in TCB Info `tcbStatus` and dcap-qvl's report).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
            Self::SwHardeningNeeded => "SWHardeningNeeded",
            Self::TdRelaunchAdvised => "TDRelaunchAdvised",
            Self::TdRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
            Self::UpToDate => "UpToDate",
        }
    }
}

impl core::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for TcbStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A name that is not a [`TcbStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCB status")]
#[non_exhaustive]
pub struct ParseTcbStatusError;

impl core::str::FromStr for TcbStatus {
    type Err = ParseTcbStatusError;

    /// Parses the PCS spelling, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or(ParseTcbStatusError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TcbStatus::ALL {
            assert_eq!(s.as_str().parse(), Ok(s));
            assert_eq!(s.to_string().to_ascii_lowercase().parse(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
        assert_eq!("Whatever".parse::<TcbStatus>(), Err(ParseTcbStatusError));
    }

    #[test]
    fn all_lists_every_status_once() {
        let mut names: Vec<&str> = TcbStatus::ALL.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TcbStatus::ALL.len());
    }
}
