//! Pacemaker's own tools behind [`ClusterTools`], each call through `exec`
//! and bounded.

use std::time::Duration;

use super::cluster_tools::{switch_provider_command_line, ClusterTools, Step, SwitchError};
use super::state::{parse_cib, parse_crm_mon, Cib, CibVersion, Monitor};
use crate::deadline::Clock;
use crate::exec::{self, ExecError};
use crate::ocf::Deadline;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The CIB manager's exit code for ENXIO: the guarded XPath matched nothing.
const CIBADMIN_NO_MATCH: i32 = 105;

fn bounded() -> Deadline {
    Deadline::after(CALL_TIMEOUT)
}

fn run_line(words: &[String]) -> Result<(), ExecError> {
    exec::run(&words[0], &words[1..], &bounded()).map(drop)
}

/// This node's cibadmin, crm_mon, crm_resource and the installed agents.
pub struct Pacemaker;

impl ClusterTools for Pacemaker {
    fn read_cib(&self) -> anyhow::Result<Cib> {
        let out = exec::run("cibadmin", &["--query"], &bounded())?;
        parse_cib(&out.stdout)
    }

    fn read_monitor(&self) -> anyhow::Result<Monitor> {
        let out = exec::run("crm_mon", &["--one-shot", "--inactive", "--output-as=xml"], &bounded())?;
        parse_crm_mon(&out.stdout)
    }

    fn apply(&self, step: &Step) -> Result<(), ExecError> {
        run_line(&step.command_line())
    }

    fn switch_provider(&self, id: &str, to: &str, version: &CibVersion) -> Result<(), SwitchError> {
        match run_line(&switch_provider_command_line(id, to, version)) {
            Ok(()) => Ok(()),
            Err(ExecError::Failed { output, .. }) if output.status.code() == Some(CIBADMIN_NO_MATCH) => Err(SwitchError::Changed),
            Err(e) => Err(SwitchError::Other(e)),
        }
    }

    fn validate_all(&self, id: &str, to: &str, params: &[(String, String)]) -> anyhow::Result<()> {
        let ocf_root = std::env::var("OCF_ROOT").unwrap_or_else(|_| "/usr/lib/ocf".into());
        let agent = format!("{ocf_root}/resource.d/{to}/VirtualDomain");
        let mut env: Vec<(String, String)> = vec![
            ("OCF_ROOT".into(), ocf_root.clone()),
            ("OCF_RESOURCE_INSTANCE".into(), id.into()),
            ("OCF_RESOURCE_TYPE".into(), "VirtualDomain".into()),
            ("OCF_RESOURCE_PROVIDER".into(), to.into()),
        ];
        env.extend(params.iter().map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.clone())));
        match exec::run_unchecked_with_env(&agent, &["validate-all"], &env, &bounded()) {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => {
                let reason = out.stderr.lines().find_map(|l| l.strip_prefix("ocf-exit-reason:")).map(str::to_owned);
                let fallback = out.stderr.lines().chain(out.stdout.lines()).map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_owned();
                anyhow::bail!("{agent} validate-all exited {}: {}", out.status.code().unwrap_or(-1), reason.unwrap_or(fallback))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn clock(&self) -> Clock {
        Clock::System
    }
}
