//! validate-all, and the checks every action runs before it acts. Codes:
//! a parameter value that is wrong everywhere is ERR_CONFIGURED; something
//! this node lacks (a file, a program) is ERR_INSTALLED.

use std::path::{Path, PathBuf};

use crate::deadline::Deadline;
use crate::drbd::{DrbdError, DrbdSource};
use crate::exec::find_program;
use crate::hypervisor::domain_xml::DomainConfig;
use crate::hypervisor::ShutdownModes;
use crate::ocf::params::ParamError;
use crate::ocf::{OcfError};
use crate::vdomain::Params;

use super::vm::{Identity, LoadedConfig};

pub fn param_errors(errors: &[ParamError]) -> OcfError {
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    OcfError::configured(text.join("; "))
}

pub fn config_path(params: &Params) -> Result<PathBuf, OcfError> {
    let config = params.config.as_deref().ok_or_else(|| OcfError::configured("required parameter config is not set"))?;
    if !config.starts_with('/') {
        return Err(OcfError::configured(format!("config must be an absolute path, not '{config}'")));
    }
    Ok(PathBuf::from(config))
}

pub fn load_config(path: &Path) -> Result<LoadedConfig, OcfError> {
    let xml = std::fs::read_to_string(path)
        .map_err(|e| OcfError::installed(format!("config file {} is not readable: {e}", path.display())))?;
    let domain = DomainConfig::parse(&xml)
        .map_err(|e| OcfError::installed(format!("config file {}: {e}", path.display())))?;
    Ok(LoadedConfig { path: path.to_path_buf(), identity: Identity::Config(xml), domain })
}

/// Checks that depend only on the parameter values.
pub fn check_params(params: &Params) -> Result<(), OcfError> {
    if params.force_stop && params.snapshot.is_some() {
        return Err(OcfError::configured("force_stop and snapshot cannot be used together"));
    }
    if params.backingfile.is_none() && (params.stateless || params.copyindirs.is_some()) {
        return Err(OcfError::configured("stateless and copyindirs need backingfile"));
    }
    if let Some(mode) = &params.shutdown_mode {
        ShutdownModes::parse(mode).map_err(|e| OcfError::configured(format!("shutdown_mode: {e}")))?;
    }
    super::migration::validate(params).map_err(|e| OcfError::configured(format!("{e:#}")))
}

/// Checks of what this node must have for the resource to run here.
pub fn check_node(params: &Params, config: &LoadedConfig) -> Result<(), OcfError> {
    if let Some(emulator) = &config.domain.emulator {
        if !Path::new(emulator).exists() {
            return Err(OcfError::installed(format!("emulator {emulator} of {} is not installed", config.domain.name)));
        }
    }
    if let Some(dir) = &params.snapshot {
        if !Path::new(dir).is_dir() {
            return Err(OcfError::installed(format!("snapshot directory {dir} does not exist")));
        }
    }
    if let Some(backing) = &params.backingfile {
        if !Path::new(backing).is_file() {
            return Err(OcfError::installed(format!("backingfile {backing} does not exist")));
        }
        require_program("qemu-img", "backingfile")?;
    }
    if let Some(dirs) = &params.copyindirs {
        require_program("virt-copy-in", "copyindirs")?;
        for dir in dirs.split_whitespace() {
            if !Path::new(dir).exists() {
                return Err(OcfError::installed(format!("copyindirs: {dir} does not exist")));
            }
        }
    }
    if params.sync_config_on_stop {
        require_program("csync2", "sync_config_on_stop")?;
    }
    if let Some(scripts) = &params.monitor_scripts {
        for script in scripts.split_whitespace() {
            if find_program(script).is_none() {
                return Err(OcfError::installed(format!("monitor script {script} is not an executable")));
            }
        }
    }
    Ok(())
}

/// validate-all's part of the DRBD gate: rules F1 and F2 (the fencing policy
/// of the DRBD resources behind the domain). Missing fencing is a warning, or with
/// `drbd_require_fencing` OCF_ERR_CONFIGURED: the DRBD configuration, the
/// same on every node, cannot keep a failover off older data. DRBD state
/// that cannot be read here (module not loaded, resource down) says
/// nothing about the configuration: a warning, and start checks again.
pub fn check_drbd_fencing(drbd: &dyn DrbdSource, params: &Params, config: &LoadedConfig, deadline: &Deadline) -> Result<(), OcfError> {
    let devices: Vec<&str> = config.domain.block_devices().collect();
    match crate::drbd::check_fencing(drbd, &devices, params.drbd_resources.as_deref(), &super::drbd_gate::gate_params(params), deadline) {
        Ok(()) => Ok(()),
        Err(DrbdError::Refused(findings)) => Err(OcfError::configured(findings.join("; "))),
        Err(e) => {
            tracing::warn!("the DRBD fencing policy cannot be checked on this node: {e}");
            Ok(())
        }
    }
}

fn require_program(program: &str, for_what: &str) -> Result<(), OcfError> {
    find_program(program)
        .map(drop)
        .ok_or_else(|| OcfError::installed(format!("{for_what} needs {program}, which is not installed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs).expect("valid test parameters")
    }

    #[test]
    fn parameter_combinations() {
        use crate::ocf::OcfStatus::ErrConfigured;
        let ok = params(&[("config", "/x.xml")]);
        assert!(check_params(&ok).is_ok());
        let bad = [
            params(&[("config", "/x.xml"), ("force_stop", "true"), ("snapshot", "/tmp")]),
            params(&[("config", "/x.xml"), ("stateless", "true")]),
            params(&[("config", "/x.xml"), ("shutdown_mode", "acpi,reboot")]),
            params(&[("config", "/x.xml"), ("migrateport", "70000")]),
        ];
        for p in bad {
            assert_eq!(check_params(&p).unwrap_err().status, ErrConfigured, "{p:?}");
        }
        assert!(check_params(&params(&[("config", "/x.xml"), ("shutdown_mode", "agent,acpi")])).is_ok());
    }

    #[test]
    fn config_must_be_set_and_absolute() {
        assert!(config_path(&params(&[])).unwrap_err().reason.contains("config is not set"));
        assert!(config_path(&params(&[("config", "vm1.xml")])).is_err());
        assert_eq!(config_path(&params(&[("config", "/etc/vm1.xml")])).unwrap(), PathBuf::from("/etc/vm1.xml"));
    }
}
