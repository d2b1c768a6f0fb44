//! The few libvirt calls the `virt` crate's safe API lacks, wrapped once.

use std::ffi::CString;
use std::os::raw::c_int;

use virt::domain::Domain;
use virt::error::Error as VirtError;
use virt::sys;

use super::libvirt_error::hv_error;
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
pub(crate) fn state(domain: &Domain) -> HvResult<(u32, u32)> {
    let mut state: c_int = -1;
    let mut reason: c_int = -1;
    // SAFETY: `domain` owns a valid reference for the duration of the call.
    check(unsafe { sys::virDomainGetState(domain.as_ptr(), &mut state, &mut reason, 0) })?;
    Ok((state.max(0) as u32, reason.max(0) as u32))
}

/// `virDomainSave`: writes the guest's memory to `path` and stops it.
pub(crate) fn save(domain: &Domain, path: &str) -> HvResult<()> {
    let path = CString::new(path).map_err(|_| HvError::other("save path contains a NUL byte"))?;
    // SAFETY: valid domain reference and NUL-terminated path that outlives the call.
    check(unsafe { sys::virDomainSave(domain.as_ptr(), path.as_ptr()) })
}

/// `virDomainAbortJob`: cancels the running job (a migration).
pub(crate) fn abort_job(domain: &Domain) -> HvResult<()> {
    // SAFETY: valid domain reference.
    check(unsafe { sys::virDomainAbortJob(domain.as_ptr()) })
}

/// `virDomainMigrateStartPostCopy`: switches a running migration to post-copy.
pub(crate) fn migrate_start_postcopy(domain: &Domain) -> HvResult<()> {
    // SAFETY: valid domain reference.
    check(unsafe { sys::virDomainMigrateStartPostCopy(domain.as_ptr(), 0) })
}

/// The numeric figures of a domain's job, by libvirt's field names
/// (`VIR_DOMAIN_JOB_*`), and the job type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JobFigures {
    /// `virDomainJobType`: 0 none, 1 bounded, 2 unbounded, 3 completed, ...
    pub job_type: i32,
    pub figures: Vec<(String, u64)>,
}

impl JobFigures {
    pub fn get(&self, field: &std::ffi::CStr) -> Option<u64> {
        let field = field.to_str().ok()?;
        self.figures.iter().find(|(name, _)| name == field).map(|(_, value)| *value)
    }

    /// A job runs (its end is known or not).
    pub fn is_active(&self) -> bool {
        [sys::VIR_DOMAIN_JOB_BOUNDED, sys::VIR_DOMAIN_JOB_UNBOUNDED].contains(&(self.job_type as u32))
    }
}

/// `virDomainGetJobStats`, read field by field and freed with libvirt's own
/// `virTypedParamsFree` (the `virt` crate turns the array into a `Vec`,
/// which is undefined behaviour when libvirt returns none).
pub(crate) fn job_stats(domain: &Domain) -> HvResult<JobFigures> {
    let mut job_type: c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: valid domain reference; libvirt allocates `params` for us.
    check(unsafe { sys::virDomainGetJobStats(domain.as_ptr(), &mut job_type, &mut params, &mut count, 0) })?;
    let mut figures = Vec::new();
    if !params.is_null() {
        for index in 0..count.max(0) as usize {
            // SAFETY: libvirt returned `count` initialised parameters at `params`.
            let param = unsafe { &*params.add(index) };
            // SAFETY: `field` is a NUL-terminated array inside the parameter.
            let name = unsafe { std::ffi::CStr::from_ptr(param.field.as_ptr()) }.to_string_lossy().into_owned();
            // SAFETY: the union member read is the one `type_` names.
            let value = unsafe {
                match param.type_ as u32 {
                    sys::VIR_TYPED_PARAM_ULLONG => Some(param.value.ul),
                    sys::VIR_TYPED_PARAM_UINT => Some(u64::from(param.value.ui)),
                    sys::VIR_TYPED_PARAM_LLONG => u64::try_from(param.value.l).ok(),
                    sys::VIR_TYPED_PARAM_INT => u64::try_from(param.value.i).ok(),
                    _ => None,
                }
            };
            if let Some(value) = value {
                figures.push((name, value));
            }
        }
        // SAFETY: frees exactly what libvirt allocated above, once.
        unsafe { sys::virTypedParamsFree(params, count) };
    }
    Ok(JobFigures { job_type, figures })
}
