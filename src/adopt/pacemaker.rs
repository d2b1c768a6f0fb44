//! The cluster commands `adopt` runs, all through `exec`, each bounded.

use std::time::Duration;

use super::state::{parse_cib, parse_crm_mon, Cib, CibVersion, Monitor};
use crate::exec::{self, ExecError};
use crate::ocf::Deadline;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn bounded() -> Deadline {
    Deadline::after(CALL_TIMEOUT)
}

pub fn read_cib() -> anyhow::Result<Cib> {
    let out = exec::run("cibadmin", &["--query"], &bounded())?;
    parse_cib(&out.stdout)
}

pub fn read_monitor() -> anyhow::Result<Monitor> {
    let out = exec::run("crm_mon", &["--one-shot", "--inactive", "--output-as=xml"], &bounded())?;
    parse_crm_mon(&out.stdout)
}

pub fn set_meta_args<'a>(id: &'a str, name: &'a str, value: &'a str) -> Vec<&'a str> {
    vec!["crm_resource", "--resource", id, "--meta", "--set-parameter", name, "--parameter-value", value]
}

pub fn delete_meta_args<'a>(id: &'a str, name: &'a str) -> Vec<&'a str> {
    vec!["crm_resource", "--resource", id, "--meta", "--delete-parameter", name]
}

pub fn refresh_args(id: &str) -> Vec<&str> {
    vec!["crm_resource", "--refresh", "--resource", id]
}

/// The compare-and-swap of one primitive's provider: the XPath matches only
/// while the CIB still has the version that was read, and the CIB manager
/// evaluates it and applies the change as one request. `--modify` changes the
/// element in place; `--replace --xpath` would re-append it at the end of its
/// parent, reordering a group's members (their start order).
pub fn switch_provider_args(id: &str, to: &str, version: &CibVersion) -> Vec<String> {
    vec![
        "cibadmin".into(),
        "--modify".into(),
        "--xpath".into(),
        format!(
            "/cib[@admin_epoch='{}' and @epoch='{}']/configuration/resources//primitive[@id='{id}']",
            version.admin_epoch, version.epoch
        ),
        "--xml-text".into(),
        format!("<primitive id=\"{}\" provider=\"{}\"/>", quick_xml::escape::escape(id), quick_xml::escape::escape(to)),
    ]
}

#[derive(Debug)]
pub enum SwitchError {
    /// The CIB changed since it was read (cibadmin: No such device or address).
    Changed,
    Other(ExecError),
}

pub fn switch_provider(id: &str, to: &str, version: &CibVersion) -> Result<(), SwitchError> {
    let args = switch_provider_args(id, to, version);
    match exec::run(&args[0], &args[1..], &bounded()) {
        Ok(_) => Ok(()),
        // 105 is cibadmin's exit code for ENXIO: the XPath matched nothing.
        Err(ExecError::Failed { output, .. }) if output.status.code() == Some(105) => Err(SwitchError::Changed),
        Err(e) => Err(SwitchError::Other(e)),
    }
}

/// Runs one of the `*_args` command lines.
pub fn run(args: &[&str]) -> Result<(), ExecError> {
    exec::run(args[0], &args[1..], &bounded()).map(drop)
}

/// The target agent's validate-all with the resource's parameters, run as
/// Pacemaker would run it on this node. Err carries the agent's reason.
pub fn validate_all(id: &str, to: &str, params: &[(String, String)]) -> anyhow::Result<()> {
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
