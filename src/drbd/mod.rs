//! DRBD state readers and the gate that keeps guests off stale data.
//!
//! - [`events2`], [`proc84`], [`show`]: pure parsers of what DRBD prints
//! - [`model`]: the one normalized state they produce
//! - [`source`]: which DRBD is present and how its state is read
//! - [`disks`]: a domain's disks -> DRBD resource names
//! - [`gate`]: THE decision table
//! - [`monitor`]: findings for a running guest
//! - [`command`]: `virtguard drbd status|check`

pub(crate) mod command;
pub(crate) mod disks;
pub mod events2;
pub(crate) mod gate;
pub mod model;
pub(crate) mod monitor;
pub mod proc84;
pub mod show;
pub(crate) mod source;

use tracing::{debug, info, warn};

use crate::deadline::Deadline;

pub use disks::resources_for_disks;
pub use gate::{decide, fencing_rule, FencingVerdict, GateOptions, Verdict};
pub use model::DrbdState;
pub use monitor::{Finding, Problem};
pub use source::{DrbdSource, ReadError, Recorded, Sources};

/// Why the gate or the monitor could not give an answer, or said no. The
/// caller decides what that means for its action (see `vdomain::drbd_gate`).
#[derive(Debug, Clone)]
pub enum DrbdError {
    /// The state could not be read (or the DRBD tools are missing).
    Read(ReadError),
    /// The domain's disks or `drbd_resources` name no usable resource.
    Resources(String),
    /// The gate refuses, with the reason for each volume.
    Refused(Vec<String>),
}

impl DrbdError {
    /// The DRBD tools are not installed (rather than the data being unusable).
    pub fn tools_missing(&self) -> bool {
        matches!(self, DrbdError::Read(ReadError::NotInstalled(_)))
    }
}

impl std::fmt::Display for DrbdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrbdError::Read(e) => e.fmt(f),
            DrbdError::Resources(message) => f.write_str(message),
            DrbdError::Refused(reasons) => f.write_str(&reasons.join("; ")),
        }
    }
}

impl std::error::Error for DrbdError {}

/// What this node is about to do with the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Start,
    /// On the node that runs the guest, before any memory is sent.
    MigrateSource { target: String },
    /// On the node that receives the guest.
    MigrateTarget { source: String },
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Purpose::Start => f.write_str("start"),
            Purpose::MigrateSource { target } => write!(f, "live migration to {target}"),
            Purpose::MigrateTarget { source } => write!(f, "live migration from {source}"),
        }
    }
}

/// The operator's choices that shape the gate (the agent's parameters
/// `drbd_allow_diskless`, `drbd_require_fencing` and `drbd_dual_primary`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateParams {
    pub allow_diskless: bool,
    /// F1 refuses a start instead of warning.
    pub require_fencing: bool,
    /// Both nodes are Primary by design (S5, M3).
    pub dual_primary: bool,
}

impl GateParams {
    pub fn options(&self) -> GateOptions {
        GateOptions { allow_diskless: self.allow_diskless, dual_primary: self.dual_primary }
    }

    /// Migrations, and a start beside a dual-primary peer, need
    /// `allow-two-primaries`, which only `drbdsetup show` tells.
    pub fn reads_net_options(&self, purpose: &Purpose) -> bool {
        self.dual_primary || !matches!(purpose, Purpose::Start)
    }
}

/// The gate for a domain: Ok when every DRBD resource behind `block_devices`
/// (or named in `explicit`, the `drbd_resources` parameter) may be used for
/// `purpose` on this node. Without DRBD disks and without `explicit` nothing
/// is read and nothing is run.
pub fn gate_domain(
    sources: &dyn DrbdSource,
    block_devices: &[&str],
    explicit: Option<&str>,
    purpose: &Purpose,
    params: &GateParams,
    deadline: &Deadline,
) -> Result<(), DrbdError> {
    if !uses_drbd(block_devices, explicit) {
        debug!("DRBD gate: no DRBD disks, nothing to check");
        return Ok(());
    }
    let state = sources.read(params.reads_net_options(purpose), deadline).map_err(DrbdError::Read)?;
    let resources = resources_for_disks(block_devices, explicit, &state)
        .map_err(|e| DrbdError::Resources(format!("DRBD gate: {e:#}")))?;
    let verdict = decide(&state, &resources, purpose, &params.options());
    for note in &verdict.notes {
        info!("DRBD gate: {note}");
    }
    let mut reasons = verdict.reasons;
    // F1 only for a start: a migration moves the guest between two connected
    // UpToDate copies (T5, M2), which no cut link has made unequal.
    if *purpose == Purpose::Start {
        reasons.extend(fencing_findings(sources, &resources, params, deadline));
    }
    if reasons.is_empty() {
        info!("DRBD gate: {} may be used for {purpose} ({})", resources.join(", "), state.origin.describe());
        Ok(())
    } else {
        for reason in &reasons {
            warn!("DRBD gate: {reason}");
        }
        Err(DrbdError::Refused(reasons))
    }
}

/// F1 and F2 alone, for validate-all: Ok when every resource is fenced as
/// it should be, or when it is not and fencing is not required (each
/// finding is logged as a warning); `Refused` when fencing is required and
/// missing.
pub fn check_fencing(
    sources: &dyn DrbdSource,
    block_devices: &[&str],
    explicit: Option<&str>,
    params: &GateParams,
    deadline: &Deadline,
) -> Result<(), DrbdError> {
    if !uses_drbd(block_devices, explicit) {
        return Ok(());
    }
    // The state only to tie /dev/drbdN to resource names.
    let state = sources.read(false, deadline).map_err(DrbdError::Read)?;
    let resources = resources_for_disks(block_devices, explicit, &state)
        .map_err(|e| DrbdError::Resources(format!("DRBD fencing check: {e:#}")))?;
    let refusals = fencing_findings(sources, &resources, params, deadline);
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(DrbdError::Refused(refusals))
    }
}

/// Runs F1 and F2: warnings are logged here; what refuses is returned.
fn fencing_findings(sources: &dyn DrbdSource, resources: &[String], params: &GateParams, deadline: &Deadline) -> Vec<String> {
    let settings = sources.read_fencing(deadline);
    let verdict = fencing_rule(resources, settings.as_deref().map_err(String::as_str), params.require_fencing, params.dual_primary);
    if verdict.refused {
        return verdict.findings;
    }
    for finding in &verdict.findings {
        warn!("DRBD gate: {finding}");
    }
    Vec::new()
}

/// Problems of the DRBD volumes behind a running guest (see [`monitor`]
/// for which ones mean the guest can no longer write). Empty without DRBD
/// disks, without running anything.
pub fn monitor_findings(
    sources: &dyn DrbdSource,
    block_devices: &[&str],
    explicit: Option<&str>,
    deadline: &Deadline,
) -> Result<Vec<Finding>, DrbdError> {
    if !uses_drbd(block_devices, explicit) {
        return Ok(Vec::new());
    }
    let state = sources.read(false, deadline).map_err(DrbdError::Read)?;
    let resources = resources_for_disks(block_devices, explicit, &state)
        .map_err(|e| DrbdError::Resources(format!("DRBD monitor: {e:#}")))?;
    let found = monitor::findings(&state, &resources);
    for f in &found {
        if f.is_failure() {
            warn!("DRBD: {}", f.message);
        } else {
            info!("DRBD: {}", f.message);
        }
    }
    Ok(found)
}

fn uses_drbd(block_devices: &[&str], explicit: Option<&str>) -> bool {
    disks::explicit_names(explicit).is_some() || block_devices.iter().any(|d| disks::looks_like_drbd(d))
}
