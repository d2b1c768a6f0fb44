//! The few libvirt calls the `virt` crate's safe API lacks, wrapped once.

use std::ffi::CString;
use std::os::raw::c_int;

use virt::domain::Domain;
use virt::error::Error as VirtError;
use virt::sys;

use super::libvirt::hv_error;
use super::{HvError, HvResult};

fn check(rc: c_int) -> HvResult<()> {
    if rc < 0 {
        Err(hv_error(VirtError::last_error()))
    } else {
        Ok(())
    }
}

/// `virDomainGetState` as raw codes, so that a state newer than our table
/// is reported rather than mapped to a guess.
pub fn state(domain: &Domain) -> HvResult<(u32, u32)> {
    let mut state: c_int = -1;
    let mut reason: c_int = -1;
    // SAFETY: `domain` owns a valid reference for the duration of the call.
    check(unsafe { sys::virDomainGetState(domain.as_ptr(), &mut state, &mut reason, 0) })?;
    Ok((state.max(0) as u32, reason.max(0) as u32))
}

/// `virDomainSave`: writes the guest's memory to `path` and stops it.
pub fn save(domain: &Domain, path: &str) -> HvResult<()> {
    let path = CString::new(path).map_err(|_| HvError::other("save path contains a NUL byte"))?;
    // SAFETY: valid domain reference and NUL-terminated path that outlives the call.
    check(unsafe { sys::virDomainSave(domain.as_ptr(), path.as_ptr()) })
}

/// `virDomainAbortJob`: cancels the running job (a migration).
pub fn abort_job(domain: &Domain) -> HvResult<()> {
    // SAFETY: valid domain reference.
    check(unsafe { sys::virDomainAbortJob(domain.as_ptr()) })
}

/// `virDomainMigrateStartPostCopy`: switches a running migration to post-copy.
pub fn migrate_start_postcopy(domain: &Domain) -> HvResult<()> {
    // SAFETY: valid domain reference.
    check(unsafe { sys::virDomainMigrateStartPostCopy(domain.as_ptr(), 0) })
}
