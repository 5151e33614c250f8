//! Reported values against a reference, field by field.

use core::fmt;

use crate::reference::{Platform, ReferenceMeasurements};
use crate::reported::ReportedValues;

/// Why a comparison could not be made at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The values come from another platform than the shape's.
    #[error("the reported values are from {reported:?} but the shape is {shape:?}")]
    PlatformMismatch {
        /// The shape's platform.
        shape: Platform,
        /// The report's platform.
        reported: Platform,
    },
    /// The reference has no shape of that name.
    #[error("the reference has no such shape")]
    UnknownShape,
}

/// The outcome for one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldStatus {
    /// Equal to the expected value (or one of the allowed ones).
    Match,
    /// Different.
    Mismatch,
    /// The report does not carry the field.
    Missing,
}

/// One compared field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// Field name, as in the report (`mrtd`, `rtmr0`, `measurement`, `guest_policy`…).
    pub field: &'static str,
    /// Expected value(s), hex; several when the reference allows any of them.
    pub expected: Vec<String>,
    /// The reported value, hex.
    pub reported: Option<String>,
    /// Outcome.
    pub status: FieldStatus,
    /// What the field covers, to explain a mismatch.
    pub meaning: &'static str,
}

/// A whole comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffReport {
    /// The shape compared against.
    pub shape: String,
    /// The fields in report order.
    pub fields: Vec<FieldDiff>,
}

impl DiffReport {
    /// Whether every field matches.
    pub fn matches(&self) -> bool {
        self.fields.iter().all(|f| f.status == FieldStatus::Match)
    }

    /// The fields that do not match.
    pub fn mismatches(&self) -> impl Iterator<Item = &FieldDiff> {
        self.fields
            .iter()
            .filter(|f| f.status != FieldStatus::Match)
    }
}

fn row(
    field: &'static str,
    meaning: &'static str,
    expected: Vec<String>,
    reported: Option<String>,
) -> FieldDiff {
    let status = match &reported {
        None => FieldStatus::Missing,
        Some(value) if expected.iter().any(|e| e == value) => FieldStatus::Match,
        Some(_) => FieldStatus::Mismatch,
    };
    FieldDiff {
        field,
        expected,
        reported,
        status,
        meaning,
    }
}

fn hex_of<T: fmt::Display>(value: Option<&T>) -> Option<String> {
    value.map(ToString::to_string)
}

fn one<T: fmt::Display>(value: &T) -> Vec<String> {
    vec![value.to_string()]
}

fn all<T: fmt::Display>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

/// Compares reported values with the reference values of one shape.
pub fn diff(
    reference: &ReferenceMeasurements,
    shape: &str,
    reported: &ReportedValues,
) -> Result<DiffReport, DiffError> {
    let vm = reference.shape(shape).ok_or(DiffError::UnknownShape)?;
    if vm.platform != reported.platform {
        return Err(DiffError::PlatformMismatch {
            shape: vm.platform,
            reported: reported.platform,
        });
    }
    // A row named after the `ReportedValues` member it compares.
    macro_rules! member_row {
        ($member:ident, $meaning:expr, $expected:expr) => {
            row(
                stringify!($member),
                $meaning,
                $expected,
                hex_of(reported.$member.as_ref()),
            )
        };
    }
    let fields = match vm.platform {
        Platform::Tdx => {
            let tdx = reference.tdx.as_ref().ok_or(DiffError::UnknownShape)?;
            let values = reference.tdx_shape(shape).ok_or(DiffError::UnknownShape)?;
            let rtmr = |i: usize| {
                let rtmrs = reported.rtmr.as_ref();
                rtmrs.and_then(|r| r.get(i)).map(ToString::to_string)
            };
            let mut fields = vec![
                member_row!(
                    mrtd,
                    "firmware (TDVF) pages added at build time",
                    one(&values.mrtd)
                ),
                row(
                    "rtmr0",
                    "firmware configuration: TD HOB, variables, ACPI tables (VM shape)",
                    one(&values.rtmr0),
                    rtmr(0),
                ),
                row(
                    "rtmr1",
                    "EFI application (UKI/kernel) and boot events",
                    one(&tdx.rtmr1),
                    rtmr(1),
                ),
                row(
                    "rtmr2",
                    "kernel command line and initrd",
                    one(&tdx.rtmr2),
                    rtmr(2),
                ),
                row(
                    "rtmr3",
                    "runtime events: model weights, engine and agent configuration",
                    one(&reference.expected_rtmr3()),
                    rtmr(3),
                ),
                member_row!(
                    mr_config_id,
                    "host-chosen configuration id",
                    all(&tdx.mr_config_id)
                ),
                member_row!(mr_owner, "host-chosen owner id", all(&tdx.mr_owner)),
                member_row!(
                    mr_owner_config,
                    "host-chosen owner configuration",
                    all(&tdx.mr_owner_config)
                ),
                member_row!(
                    td_attributes,
                    "TD attributes (debug, SEPT_VE_DISABLE, PKS, KL…)",
                    one(&tdx.td_attributes)
                ),
            ];
            if let Some(xfam) = &tdx.xfam {
                fields.push(member_row!(xfam, "extended features", one(xfam)));
            }
            fields
        }
        Platform::Snp => {
            let snp = reference.snp.as_ref().ok_or(DiffError::UnknownShape)?;
            let values = reference.snp_shape(shape).ok_or(DiffError::UnknownShape)?;
            let measurement = &values.measurement;
            vec![
                member_row!(
                    measurement,
                    "launch digest: firmware, kernel/initrd/cmdline hashes, vCPU count and type",
                    one(measurement)
                ),
                member_row!(host_data, "host-chosen data", all(&snp.host_data)),
                row(
                    "guest_policy",
                    "guest policy (debug, migration, SMT, ABI version)",
                    vec![format!("{:#x}", snp.guest_policy)],
                    reported.guest_policy.map(|p| format!("{p:#x}")),
                ),
                row(
                    "vmpl",
                    "VMPL the report was requested from (1 for a guest under an SVSM)",
                    vec![values.vmpl.to_string()],
                    Some(reported.vmpl.unwrap_or(0).to_string()),
                ),
            ]
        }
    };
    Ok(DiffReport {
        shape: shape.to_owned(),
        fields,
    })
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for field in &self.fields {
            let mark = match field.status {
                FieldStatus::Match => "ok      ",
                FieldStatus::Mismatch => "MISMATCH",
                FieldStatus::Missing => "MISSING ",
            };
            writeln!(f, "{mark} {:<16} {}", field.field, field.meaning)?;
            if field.status != FieldStatus::Match {
                let label = if field.expected.len() > 1 {
                    "allowed "
                } else {
                    "expected"
                };
                for expected in &field.expected {
                    writeln!(f, "         {label} {expected}")?;
                }
                writeln!(
                    f,
                    "         reported {}",
                    field.reported.as_deref().unwrap_or("(absent)")
                )?;
            }
        }
        let bad = self.mismatches().count();
        if bad == 0 {
            writeln!(
                f,
                "shape {}: all {} fields match",
                self.shape,
                self.fields.len()
            )
        } else {
            writeln!(
                f,
                "shape {}: {bad} of {} fields differ",
                self.shape,
                self.fields.len()
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::hexbytes::HexBytes;
    use crate::reference::tests::sample;

    fn tdx_report(reference: &ReferenceMeasurements) -> ReportedValues {
        let tdx = reference.tdx.as_ref().unwrap();
        let values = reference.tdx_shape("tdx-4").unwrap();
        ReportedValues {
            platform: Platform::Tdx,
            mrtd: Some(values.mrtd),
            rtmr: Some([
                values.rtmr0,
                tdx.rtmr1,
                tdx.rtmr2,
                reference.expected_rtmr3(),
            ]),
            mr_config_id: Some(HexBytes::ZERO),
            mr_owner: Some(HexBytes::ZERO),
            mr_owner_config: Some(HexBytes::ZERO),
            td_attributes: Some(tdx.td_attributes),
            xfam: None,
            measurement: None,
            host_data: None,
            guest_policy: None,
            vmpl: None,
        }
    }

    #[test]
    fn matching_tdx_values_pass_and_each_changed_field_is_named() {
        let reference = sample();
        let good = tdx_report(&reference);
        assert!(diff(&reference, "tdx-4", &good).unwrap().matches());
        type Edit = fn(&mut ReportedValues);
        let cases: [(&str, Edit); 8] = [
            ("mrtd", |r| r.mrtd.as_mut().unwrap().0[0] ^= 1),
            ("rtmr0", |r| r.rtmr.as_mut().unwrap()[0].0[0] ^= 1),
            ("rtmr1", |r| r.rtmr.as_mut().unwrap()[1].0[47] ^= 1),
            ("rtmr2", |r| r.rtmr.as_mut().unwrap()[2].0[5] ^= 1),
            ("rtmr3", |r| r.rtmr.as_mut().unwrap()[3].0[5] ^= 1),
            ("mr_config_id", |r| {
                r.mr_config_id.as_mut().unwrap().0[0] = 1
            }),
            ("mr_owner", |r| r.mr_owner.as_mut().unwrap().0[0] = 1),
            ("td_attributes", |r| {
                r.td_attributes.as_mut().unwrap().0[0] = 1
            }),
        ];
        for (field, edit) in cases {
            let mut bad = good.clone();
            edit(&mut bad);
            let report = diff(&reference, "tdx-4", &bad).unwrap();
            let names: Vec<_> = report.mismatches().map(|f| f.field).collect();
            assert_eq!(names, vec![field]);
            assert!(report.to_string().contains(&format!("MISMATCH {field}")));
        }
        let mut missing = good.clone();
        missing.mr_owner_config = None;
        let report = diff(&reference, "tdx-4", &missing).unwrap();
        assert_eq!(
            report.mismatches().next().unwrap().status,
            FieldStatus::Missing
        );
    }

    #[test]
    fn snp_fields_and_errors() {
        let reference = sample();
        let good = ReportedValues {
            measurement: Some(*reference.snp_measurement("snp-4").unwrap()),
            host_data: Some(HexBytes::ZERO),
            guest_policy: Some(0x30000),
            ..ReportedValues::new(Platform::Snp)
        };
        assert!(diff(&reference, "snp-4", &good).unwrap().matches());
        for (field, edit) in [
            (
                "measurement",
                (|r: &mut ReportedValues| r.measurement.as_mut().unwrap().0[0] ^= 1) as fn(&mut _),
            ),
            ("host_data", |r| r.host_data.as_mut().unwrap().0[0] ^= 1),
            ("guest_policy", |r| r.guest_policy = Some(0x30000 | 1 << 19)),
            ("vmpl", |r| r.vmpl = Some(1)),
        ] {
            let mut bad = good.clone();
            edit(&mut bad);
            let report = diff(&reference, "snp-4", &bad).unwrap();
            assert_eq!(
                report.mismatches().map(|f| f.field).collect::<Vec<_>>(),
                vec![field]
            );
        }
        // An explicit VMPL 0 matches like an absent one; a shape naming VMPL 1 wants exactly 1.
        let at0 = ReportedValues {
            vmpl: Some(0),
            ..good.clone()
        };
        assert!(diff(&reference, "snp-4", &at0).unwrap().matches());
        let mut svsm = reference.clone();
        svsm.snp.as_mut().unwrap().shapes[0].vmpl = 1;
        let report = diff(&svsm, "snp-4", &at0).unwrap();
        assert_eq!(
            report.mismatches().map(|f| f.field).collect::<Vec<_>>(),
            vec!["vmpl"]
        );
        let at1 = ReportedValues {
            vmpl: Some(1),
            ..good.clone()
        };
        assert!(diff(&svsm, "snp-4", &at1).unwrap().matches());
        assert!(matches!(
            diff(&reference, "nope", &good),
            Err(DiffError::UnknownShape)
        ));
        assert!(matches!(
            diff(&reference, "tdx-4", &good),
            Err(DiffError::PlatformMismatch {
                shape: Platform::Tdx,
                reported: Platform::Snp
            })
        ));
    }
}
