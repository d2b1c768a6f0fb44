//! The OCF 1.1 exit codes: the only place that maps them to integers.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OcfStatus {
    Success,
    ErrGeneric,
    ErrArgs,
    ErrUnimplemented,
    ErrPerm,
    ErrInstalled,
    ErrConfigured,
    NotRunning,
    RunningPromoted,
    FailedPromoted,
    Degraded,
    DegradedPromoted,
}

impl OcfStatus {
    pub const ALL: [OcfStatus; 12] = [
        OcfStatus::Success,
        OcfStatus::ErrGeneric,
        OcfStatus::ErrArgs,
        OcfStatus::ErrUnimplemented,
        OcfStatus::ErrPerm,
        OcfStatus::ErrInstalled,
        OcfStatus::ErrConfigured,
        OcfStatus::NotRunning,
        OcfStatus::RunningPromoted,
        OcfStatus::FailedPromoted,
        OcfStatus::Degraded,
        OcfStatus::DegradedPromoted,
    ];

    pub const fn code(self) -> u8 {
        match self {
            OcfStatus::Success => 0,
            OcfStatus::ErrGeneric => 1,
            OcfStatus::ErrArgs => 2,
            OcfStatus::ErrUnimplemented => 3,
            OcfStatus::ErrPerm => 4,
            OcfStatus::ErrInstalled => 5,
            OcfStatus::ErrConfigured => 6,
            OcfStatus::NotRunning => 7,
            OcfStatus::RunningPromoted => 8,
            OcfStatus::FailedPromoted => 9,
            OcfStatus::Degraded => 190,
            OcfStatus::DegradedPromoted => 191,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            OcfStatus::Success => "OCF_SUCCESS",
            OcfStatus::ErrGeneric => "OCF_ERR_GENERIC",
            OcfStatus::ErrArgs => "OCF_ERR_ARGS",
            OcfStatus::ErrUnimplemented => "OCF_ERR_UNIMPLEMENTED",
            OcfStatus::ErrPerm => "OCF_ERR_PERM",
            OcfStatus::ErrInstalled => "OCF_ERR_INSTALLED",
            OcfStatus::ErrConfigured => "OCF_ERR_CONFIGURED",
            OcfStatus::NotRunning => "OCF_NOT_RUNNING",
            OcfStatus::RunningPromoted => "OCF_RUNNING_PROMOTED",
            OcfStatus::FailedPromoted => "OCF_FAILED_PROMOTED",
            OcfStatus::Degraded => "OCF_DEGRADED",
            OcfStatus::DegradedPromoted => "OCF_DEGRADED_PROMOTED",
        }
    }
}

impl fmt::Display for OcfStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// The result of an action that did not succeed: the code Pacemaker acts on
/// and the one-line reason `crm_mon` shows to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcfError {
    pub status: OcfStatus,
    pub reason: String,
}

impl OcfError {
    pub fn new(status: OcfStatus, reason: impl Into<String>) -> Self {
        OcfError { status, reason: reason.into() }
    }
    pub fn generic(reason: impl Into<String>) -> Self {
        Self::new(OcfStatus::ErrGeneric, reason)
    }
    pub fn installed(reason: impl Into<String>) -> Self {
        Self::new(OcfStatus::ErrInstalled, reason)
    }
    pub fn configured(reason: impl Into<String>) -> Self {
        Self::new(OcfStatus::ErrConfigured, reason)
    }
    pub fn not_running(reason: impl Into<String>) -> Self {
        Self::new(OcfStatus::NotRunning, reason)
    }
}

impl fmt::Display for OcfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl std::error::Error for OcfError {}

pub type OcfResult<T = OcfStatus> = Result<T, OcfError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_the_ocf_1_1_values_and_unique() {
        let codes: Vec<u8> = OcfStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191]);
        assert_eq!(codes.iter().collect::<HashSet<_>>().len(), codes.len());
    }
}
