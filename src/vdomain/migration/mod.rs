//! migrate_to: a live migration that is checked before it starts, watched
//! while it runs, bounded by the operation timeout, and that never returns
//! without saying where the guest runs.

pub(crate) mod job;
pub(crate) mod location;
pub(crate) mod options;
pub(crate) mod preflight;
pub(crate) mod progress;
pub(crate) mod running_job;
pub(crate) mod side;
pub(crate) mod uri;

#[cfg(test)]
mod migrate_to_tests;

use std::time::Duration;

use anyhow::{bail, ensure};
use tracing::{info, warn};

use crate::host::Host;
use crate::hypervisor::state::reason;
use crate::hypervisor::{Hypervisor, StateKind};
use crate::ocf::{Deadline, OcfEnv, OcfError, OcfResult, OcfStatus};
use crate::vdomain::Params;
use crate::vdomain::vm::Vm;

use self::job::{AbortCause, DriverLimits, Outcome, Report};
use self::location::{placement, whereabouts, Placement, SideView};
use self::options::{effective_bandwidth, MigrateOptions, MigrationPlan};
use self::running_job::RunningJob;
use self::side::Side;

/// How long a successful migration's result is checked on both sides.
pub const CONFIRM_SUCCESS: Duration = Duration::from_secs(5);

/// The time limits of one migrate_to, all derived from its deadline.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Deadline,
    /// Pre-copy must be done by then (or post-copy started), else abort.
    pub cutoff: Deadline,
    /// The longest wait for libvirt to end the job after an abort.
    pub hard: Deadline,
    /// The longest look at both sides to find out where the guest is.
    pub settle: Deadline,
}

/// Kept free at the end of the operation for aborting the job and finding
/// the guest: 10% of the timeout, at least 5 s.
pub fn safety_margin(total: Duration) -> Duration {
    (total / 10).max(Duration::from_secs(5))
}

impl Limits {
    pub fn for_deadline(deadline: Deadline) -> Limits {
        let margin = safety_margin(deadline.total());
        Limits {
            deadline,
            cutoff: deadline.before(margin),
            hard: deadline.before(margin / 2),
            settle: deadline.before(Duration::from_secs(1)),
        }
    }
}

/// Checks the migration parameters without touching anything; the error
/// names the offending parameter or option. validate-all reports it as
/// OCF_ERR_CONFIGURED.
pub fn validate(params: &Params) -> anyhow::Result<()> {
    checked(params).map(|_| ())
}

/// The migration parameters, checked, and what they come to: the options
/// and the bandwidth limit (MiB/s).
fn checked(params: &Params) -> anyhow::Result<(MigrateOptions, Option<u64>)> {
    let options = MigrateOptions::parse(params.migrate_options.as_deref().unwrap_or_default())?;
    let bandwidth = effective_bandwidth(params.migration_speed, &options)?;
    if let Some(user) = &params.migration_user {
        uri::check_migration_user(user)?;
    }
    if let Some(transport) = &params.migration_transport {
        uri::check_migration_transport(transport)?;
    }
    if let Some(port) = params.migrateport {
        ensure!((1..=65535).contains(&port), "migrateport {port} is not a TCP port");
    }
    if options.tunnelled && params.migrateuri.is_some() {
        bail!("migrateuri cannot be used with --tunnelled (the data goes through libvirtd)");
    }
    if options.tunnelled && params.migration_network_suffix.is_some() {
        bail!("migration_network_suffix has no effect with --tunnelled (the data goes through libvirtd)");
    }
    if let Some(remote) = &params.remoteuri {
        ensure!(remote.contains("://"), "remoteuri '{remote}' is not a libvirt URI");
    }
    if let Some(hv) = &params.hypervisor {
        if params.remoteuri.is_none() && hv.contains("://") {
            uri::HypervisorUri::parse(hv)?;
        }
    }
    Ok((options, bandwidth))
}

/// The whole migration plan from the parameters: options, limits and both
/// URIs. `local_uri` is the local hypervisor's URI.
pub fn plan(
    params: &Params,
    local_uri: &str,
    target: &str,
    random_port: impl FnOnce() -> u16,
) -> Result<MigrationPlan, OcfError> {
    // Wrong parameters are a configuration error; parameters that only do
    // not fit this target (an address where the suffix needs a name) fail
    // this migration alone.
    let configured = |e: anyhow::Error| OcfError::configured(format!("{e:#}"));
    let generic = |e: anyhow::Error| OcfError::generic(format!("{e:#}"));
    let (options, bandwidth) = checked(params).map_err(configured)?;
    let remote_uri = uri::remote_hypervisor_uri(params, local_uri, target).map_err(generic)?;
    let data_uri = uri::migration_data_uri(params, &options, target, random_port).map_err(generic)?;
    Ok(MigrationPlan {
        remote_uri,
        data_uri,
        bandwidth,
        max_downtime: (params.migration_downtime > 0).then_some(params.migration_downtime),
        options,
    })
}

/// The name of this node: the migration source as Pacemaker names it, else
/// as the host knows itself.
pub fn source_node_name(env: &OcfEnv, host: &Host) -> String {
    env.migrate_source
        .clone()
        .or_else(|| env.on_node.clone())
        .or_else(|| host.node_name())
        .unwrap_or_else(|| "this node".into())
}

/// migrate_to: live-migrates the guest to `OCF_RESKEY_CRM_meta_migrate_target`.
/// Success means it runs there; any error leaves it where the exit reason says.
pub fn migrate_to(vm: &Vm<'_>) -> OcfResult {
    let name = vm.name();
    let local = vm.hv.as_ref().map_err(|e| OcfError::generic(format!("cannot migrate {name}: {e}")))?;
    let local: &dyn Hypervisor = *local;
    let target = vm.env.migrate_target.as_deref().ok_or_else(|| {
        OcfError::generic(format!("{name}: migrate_to needs the target node (OCF_RESKEY_CRM_meta_migrate_target is not set)"))
    })?;
    let source = source_node_name(vm.env, vm.host);
    let limits = Limits::for_deadline(vm.deadline);

    let local_uri = vm.params.hypervisor.clone().filter(|h| h.contains("://")).unwrap_or_else(|| local.uri());
    let plan = plan(vm.params, &local_uri, target, uri::random_migration_port)
        .map_err(|e| OcfError::new(e.status, format!("{name}: {}", e.reason)))?;
    let ctx = preflight::Context { name, source_node: &source, target_node: target };
    let remote = preflight::check(vm, local, &plan, &ctx, &limits)?;

    // Everything but the migration call itself goes over a connection of its
    // own, each call bounded (see RunningJob).
    let control_uri = local.uri();
    let control = local
        .open_connection(&control_uri, preflight::CONNECT_BUDGET.min(limits.cutoff.remaining() / 2))
        .map_err(|e| ctx.refuse(format_args!("cannot open a second connection to the local hypervisor: {e}")))?
        .hypervisor()
        .clone();
    if let Some(ms) = plan.max_downtime {
        local
            .set_max_downtime(name, ms)
            .map_err(|e| ctx.refuse(format_args!("cannot set the maximum downtime to {ms} ms: {e}")))?;
    }
    info!(
        "{name}: live migration to {target} starts: hypervisor {}, data {}, bandwidth {}, max downtime {}, {}s until the cutoff",
        plan.remote_uri,
        plan.data_uri.as_deref().unwrap_or("chosen by libvirt"),
        plan.bandwidth.map(|b| format!("{b} MiB/s")).unwrap_or_else(|| "unlimited".into()),
        plan.max_downtime.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "libvirt's default".into()),
        limits.cutoff.remaining().as_secs(),
    );
    let call = remote.migrate_here(name, &plan).map_err(|e| ctx.refuse(e))?;
    let remote = remote.hypervisor().clone();
    let watched = (!plan.options.p2p).then(|| remote.clone());
    let mut job = RunningJob { name: name.to_owned(), control: control.clone(), call, target: watched };
    let driver = DriverLimits {
        cutoff: limits.cutoff,
        hard: limits.hard,
        postcopy: plan.postcopy(),
        poll: Duration::from_millis(250),
        log_every: Duration::from_secs(2),
    };
    let report = job::drive(&mut job, &driver, &format!("{name} -> {target}"));
    let source_side = Side::new(control, control_uri, source.as_str());
    let target_side = Side::new(remote, plan.remote_uri.as_str(), target);
    conclude(vm, source_side, target_side, &ctx, &limits, report)
}

/// Turns the driver's report into the action's result, after finding out
/// where the guest runs.
fn conclude(
    vm: &Vm<'_>,
    mut source_side: Side,
    mut target_side: Side,
    ctx: &preflight::Context<'_>,
    limits: &Limits,
    report: Report,
) -> OcfResult {
    let (name, target) = (ctx.name, ctx.target_node);
    let elapsed = vm.deadline.elapsed().as_secs_f64();
    let libvirt_done =
        !matches!(report.outcome, Outcome::Aborted { worker: None, .. } | Outcome::PostcopyUnfinished | Outcome::SourceLost);
    let postcopy = matches!(
        report.outcome,
        Outcome::Completed { postcopy: true } | Outcome::Failed { postcopy: true, .. } | Outcome::PostcopyUnfinished
    );
    let completed = matches!(report.outcome, Outcome::Completed { .. });
    // After a success a quick look suffices; after a failure take the time it needs.
    let patience = if completed && limits.settle.remaining() > CONFIRM_SUCCESS {
        Deadline::after_on(vm.deadline.clock(), CONFIRM_SUCCESS)
    } else {
        limits.settle
    };
    let (source_view, target_view) = find_guest(&mut source_side, &mut target_side, name, &patience, libvirt_done && !postcopy);
    let facts = Facts { name, source_node: ctx.source_node, target_node: target, timeout: vm.deadline.total() };
    match verdict(&facts, &report, &source_view, &target_view) {
        Verdict::Arrived => {
            info!("{name}: live migration to {target} succeeded in {elapsed:.1}s{}", if postcopy { " (post-copy)" } else { "" });
            Ok(OcfStatus::Success)
        }
        Verdict::ArrivedDespite(trouble) => {
            warn!("{name}: {trouble}, but it runs on {target} now: reporting success");
            Ok(OcfStatus::Success)
        }
        Verdict::Failed(reason) => Err(OcfError::generic(reason)),
    }
}

/// The names and numbers an exit reason mentions.
pub struct Facts<'a> {
    pub name: &'a str,
    pub source_node: &'a str,
    pub target_node: &'a str,
    pub timeout: Duration,
}

/// How a migration attempt ended, judged by where the guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// On the target, and nothing went wrong on the way.
    Arrived,
    /// On the target although something went wrong on the way (the text
    /// says what): still a success, worth a warning.
    ArrivedDespite(String),
    /// Not (known to be) on the target: the exit reason, which says where
    /// the guest is.
    Failed(String),
}

/// The verdict from what the driver reported and where the guest was found.
pub fn verdict(facts: &Facts<'_>, report: &Report, source: &SideView, target: &SideView) -> Verdict {
    let (name, to) = (facts.name, facts.target_node);
    let found = placement(source, target);
    // A job that has not begun sending reports no memory size yet.
    let at = report.last.filter(|s| s.mem_total > 0).map(|s| s.short());
    let what = match &report.outcome {
        Outcome::Completed { .. } => {
            // libvirt's word counts when one side cannot be asked and the
            // other agrees: the source let go, or the guest executes on the
            // target (a successful call has already ended the source's copy).
            let unanswered = |side: &SideView| matches!(side, SideView::Unknown(_));
            let source_left = *source == SideView::Inactive;
            if found == Placement::Target
                || (source_left && unanswered(target))
                || (unanswered(source) && target.executing())
            {
                return Verdict::Arrived;
            }
            format!("libvirt reported the migration to {to} as done")
        }
        Outcome::Aborted { cause, worker, abort_error } => {
            let at = at.unwrap_or_else(|| "0% (no memory sent yet)".into());
            let mut text = match cause {
                AbortCause::Deadline => {
                    format!("migration to {to} aborted at {at} before the {}s timeout", facts.timeout.as_secs())
                }
                AbortCause::TargetLost => {
                    format!("migration to {to} aborted at {at}: the connection to {to}'s hypervisor was lost")
                }
            };
            if let Some(e) = abort_error {
                text += &format!(" (abort failed: {e})");
            }
            if worker.is_none() {
                text += ", libvirt has not ended the job yet";
            }
            text
        }
        Outcome::Failed { error, postcopy } => {
            let kind = if *postcopy { "post-copy migration" } else { "migration" };
            match at {
                Some(at) => format!("{kind} to {to} failed at {at}: {error}"),
                None => format!("{kind} to {to} failed before any memory was sent: {error}"),
            }
        }
        Outcome::PostcopyUnfinished => {
            format!("post-copy migration to {to} still running at the {}s timeout", facts.timeout.as_secs())
        }
        Outcome::SourceLost => {
            let at = at.unwrap_or_else(|| "0% (no memory sent yet)".into());
            format!(
                "migration to {to} interrupted at {at}: the connection to {}'s hypervisor was closed (libvirtd restarted or died)",
                facts.source_node
            )
        }
    };
    if found == Placement::Target {
        // Whatever went wrong on the way, the guest arrived and left the source.
        return Verdict::ArrivedDespite(what);
    }
    Verdict::Failed(format!("{name}: {what}; {}", whereabouts(name, facts.source_node, to, source, target)))
}

/// Looks at both sides until the guest's place is clear or `settle` comes;
/// a side whose connection was closed (its libvirtd restarted) is asked
/// again over a fresh one. A source paused by a failed pre-copy migration
/// is resumed once the target is known not to have the guest (`may_resume`).
fn find_guest(
    source_side: &mut Side,
    target_side: &mut Side,
    name: &str,
    settle: &Deadline,
    may_resume: bool,
) -> (SideView, SideView) {
    let mut resumed = false;
    loop {
        let source = source_side.look(name, settle);
        let target = target_side.look(name, settle);
        let paused_by_migration =
            matches!(&source, SideView::Active(s) if s.kind == StateKind::Paused && s.reason == reason::PAUSED_MIGRATION);
        if may_resume && !resumed && paused_by_migration && target == SideView::Inactive {
            resumed = true;
            warn!("{name}: the failed migration left the guest paused here; resuming it");
            if let Err(e) = source_side.resume(name, settle) {
                warn!("{name}: cannot resume: {e}");
            }
            continue;
        }
        let settled = placement(&source, &target).is_settled() && !paused_by_migration;
        if settled || !settle.sleep(Duration::from_millis(200)) {
            return (source, target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs).expect("valid test parameters")
    }

    fn facts() -> Facts<'static> {
        Facts { name: "vm1", source_node: "node1", target_node: "node2", timeout: Duration::from_secs(120) }
    }

    fn running() -> SideView {
        SideView::Active(crate::hypervisor::DomainState::new(StateKind::Running, 1))
    }

    fn report(outcome: Outcome, percent_left: Option<u64>) -> Report {
        let last = percent_left.map(|left| progress::JobSample {
            mem_total: 100,
            mem_remaining: left,
            iteration: Some(7),
            ..Default::default()
        });
        Report { outcome, last }
    }

    #[test]
    fn verdicts_say_how_far_it_got_and_where_the_guest_is() {
        let aborted = Outcome::Aborted { cause: AbortCause::Deadline, worker: Some("canceled".into()), abort_error: None };
        assert_eq!(
            verdict(&facts(), &report(aborted.clone(), Some(37)), &running(), &SideView::Inactive),
            Verdict::Failed("vm1: migration to node2 aborted at 63% (iteration 7) before the 120s timeout; vm1 still runs on node1".into())
        );
        assert_eq!(
            verdict(&facts(), &report(aborted, None), &running(), &SideView::Inactive),
            Verdict::Failed("vm1: migration to node2 aborted at 0% (no memory sent yet) before the 120s timeout; vm1 still runs on node1".into())
        );
        let lost = Outcome::Aborted { cause: AbortCause::TargetLost, worker: None, abort_error: Some("no job".into()) };
        assert_eq!(
            verdict(&facts(), &report(lost, Some(90)), &running(), &SideView::Unknown("socket closed".into())),
            Verdict::Failed("vm1: migration to node2 aborted at 10% (iteration 7): the connection to node2's hypervisor was lost \
                 (abort failed: no job), libvirt has not ended the job yet; vm1 still runs on node1 (node2 did not answer: socket closed)".into())
        );
        let failed = Outcome::Failed { error: "Postcopy is not supported".into(), postcopy: false };
        assert_eq!(
            verdict(&facts(), &report(failed, None), &running(), &SideView::Inactive),
            Verdict::Failed("vm1: migration to node2 failed before any memory was sent: Postcopy is not supported; vm1 still runs on node1".into())
        );
        let unfinished = report(Outcome::PostcopyUnfinished, Some(20));
        let paused = SideView::Active(crate::hypervisor::DomainState::new(StateKind::Paused, 12));
        let Verdict::Failed(reason) = verdict(&facts(), &unfinished, &paused, &running()) else { panic!("arrived") };
        assert!(reason.starts_with("vm1: post-copy migration to node2 still running at the 120s timeout; vm1 is active on both"), "{reason}");
    }

    #[test]
    fn success_is_where_the_guest_runs() {
        let done = report(Outcome::Completed { postcopy: false }, Some(0));
        assert_eq!(verdict(&facts(), &done, &SideView::Inactive, &running()), Verdict::Arrived);
        // libvirt said done, the source let go, the target cannot be asked: libvirt's word counts.
        assert_eq!(verdict(&facts(), &done, &SideView::Inactive, &SideView::Unknown("eof".into())), Verdict::Arrived);
        assert!(matches!(verdict(&facts(), &done, &running(), &SideView::Inactive),
            Verdict::Failed(reason) if reason.contains("as done; vm1 still runs on node1")));
        // The source cannot be asked (restarting, frozen) but the guest runs on the target: libvirt's word counts.
        let silent = SideView::Unknown("client socket is closed".into());
        assert_eq!(verdict(&facts(), &done, &silent, &running()), Verdict::Arrived);
        // Paused there is no proof of arrival.
        let paused = SideView::Active(crate::hypervisor::DomainState::new(StateKind::Paused, reason::PAUSED_MIGRATION));
        assert!(matches!(verdict(&facts(), &done, &silent, &paused),
            Verdict::Failed(reason) if reason.contains("location of vm1 unknown")));
        let failed = report(Outcome::Failed { error: "Finish3 failed".into(), postcopy: false }, Some(0));
        assert_eq!(
            verdict(&facts(), &failed, &SideView::Inactive, &running()),
            Verdict::ArrivedDespite("migration to node2 failed at 100% (iteration 7): Finish3 failed".into())
        );
    }

    #[test]
    fn margin_is_ten_percent_but_at_least_five_seconds() {
        assert_eq!(safety_margin(Duration::from_secs(120)), Duration::from_secs(12));
        assert_eq!(safety_margin(Duration::from_secs(20)), Duration::from_secs(5));
        let limits = Limits::for_deadline(Deadline::after_on(crate::deadline::Clock::manual(), Duration::from_secs(120)));
        assert_eq!(limits.cutoff.remaining(), Duration::from_secs(108));
        assert_eq!(limits.hard.remaining(), Duration::from_secs(114));
        assert_eq!(limits.settle.remaining(), Duration::from_secs(119));
    }

    #[test]
    fn validate_names_what_is_wrong() {
        let ok = params(&[("config", "/x.xml"), ("migrate_options", "--p2p --auto-converge --bandwidth=10")]);
        assert!(validate(&ok).is_ok());
        let cases: [(&[(&str, &str)], &str); 8] = [
            (&[("migrate_options", "--turbo")], "--turbo"),
            (&[("migrate_options", "--bandwidth=7"), ("migration_speed", "5")], "migration_speed"),
            (&[("migration_user", "root@x")], "migration_user"),
            (&[("migration_transport", "carrier-pigeon")], "carrier-pigeon"),
            (&[("migrateport", "65536")], "65536"),
            (&[("migrate_options", "--p2p --tunnelled"), ("migrateuri", "tcp://x")], "--tunnelled"),
            (&[("remoteuri", "node2")], "remoteuri"),
            (&[("hypervisor", "qemu://host:port/system")], "malformed"),
        ];
        for (pairs, needle) in cases {
            let error = validate(&params(pairs)).unwrap_err().to_string();
            assert!(error.contains(needle), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn plan_combines_everything() {
        let p = params(&[
            ("migrate_options", "--p2p --postcopy --migrateuri=tcp://%n-data:49300"),
            ("migration_speed", "1"),
            ("migration_downtime", "250"),
            ("migration_transport", "tcp"),
        ]);
        let plan = plan(&p, "qemu:///system", "node2", || 49152).unwrap();
        assert_eq!(plan.remote_uri, "qemu+tcp://node2/system");
        assert_eq!(plan.data_uri.as_deref(), Some("tcp://node2-data:49300"));
        assert_eq!(plan.bandwidth, Some(1));
        assert_eq!(plan.max_downtime, Some(250));
        assert_eq!(plan.postcopy(), options::PostcopyPolicy::BeforeDeadline);
        assert!(plan.options.p2p && !plan.options.tunnelled);
        let error = super::plan(&params(&[("migrate_options", "--nope")]), "qemu:///system", "n2", || 1).unwrap_err();
        assert_eq!(error.status, OcfStatus::ErrConfigured);
        let error = super::plan(&params(&[("migration_network_suffix", "-m")]), "qemu:///system", "10.1.1.2", || 1)
            .unwrap_err();
        assert_eq!(error.status, OcfStatus::ErrGeneric);
    }

    /// The parameters that behave differently from the classic agent: what
    /// their help text (meta-data, man page, `pcs resource describe`) says
    /// is what the code does.
    #[test]
    fn help_texts_that_differ_from_the_classic_agent_match_the_code() {
        let help = |name: &str| crate::ocf::params::ParamSpec::find(name).expect(name).longdesc;
        let says = |name: &str, words: &str| assert!(help(name).contains(words), "{name}: {}", help(name));

        says("migration_network_suffix", "and for the connection to the target's hypervisor");
        let p = params(&[("migration_network_suffix", "-mig"), ("migration_transport", "ssh")]);
        assert_eq!(plan(&p, "qemu:///system", "node2.example", || 49152).unwrap().remote_uri, "qemu+ssh://node2-mig.example/system");
        assert_eq!(
            plan(&p, "qemu:///system", "node2.example", || 49152).unwrap().data_uri.as_deref(),
            Some("tcp:node2-mig.example:49152")
        );

        says("migration_transport", "qemu+tls with ssh gives qemu+ssh");
        let p = params(&[("migration_transport", "ssh")]);
        assert_eq!(plan(&p, "qemu+tls:///system", "node2", || 1).unwrap().remote_uri, "qemu+ssh://node2/system");

        says("migration_user", "configuration error reported by validate-all");
        assert!(validate(&params(&[("migration_user", "root@x")])).unwrap_err().to_string().contains("migration_user"));
        says("migration_user", "a user in the local URI is kept");
        assert_eq!(plan(&params(&[]), "qemu+ssh://admin@node1/system", "node2", || 1).unwrap().remote_uri, "qemu+ssh://admin@node2/system");

        says("migrateuri", "without migration_network_suffix");
        let p = params(&[("migrateuri", "tcp://%n:49300"), ("migration_network_suffix", "-mig")]);
        assert_eq!(plan(&p, "qemu:///system", "node2", || 1).unwrap().data_uri.as_deref(), Some("tcp://node2:49300"));

        says("migration_speed", "applied from the first byte");
        assert_eq!(plan(&params(&[("migration_speed", "7")]), "qemu:///system", "node2", || 1).unwrap().bandwidth, Some(7));
        says("migration_downtime", "applied before the first byte is sent");
        assert_eq!(plan(&params(&[("migration_downtime", "300")]), "qemu:///system", "node2", || 1).unwrap().max_downtime, Some(300));

        says("migrate_options", "configuration error reported by validate-all");
        let error = plan(&params(&[("migrate_options", "--warp")]), "qemu:///system", "node2", || 1).unwrap_err();
        assert_eq!(error.status, OcfStatus::ErrConfigured);
    }

    #[test]
    fn source_node_prefers_pacemakers_names() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            OcfEnv::from_lookup(&|n| map.get(n).cloned())
        };
        let host = Host::with(|_| Err(crate::hypervisor::HvError::other("not asked")));
        assert_eq!(source_node_name(&env(&[("OCF_RESKEY_CRM_meta_migrate_source", "node1")]), &host), "node1");
        assert_eq!(source_node_name(&env(&[("OCF_RESKEY_CRM_meta_on_node", "n1")]), &host), "n1");
        assert_eq!(source_node_name(&env(&[]), &host), "node-test", "the host's own name");
        assert!(!source_node_name(&env(&[]), &Host::real()).is_empty());
    }
}
