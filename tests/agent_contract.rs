//! The OCF contract of the built binary, called exactly as Pacemaker calls
//! it, for everything that needs no running guest: meta-data, usage, exit
//! codes, exit reasons, and the probe / monitor / stop rules for an invalid
//! environment.

mod support;

use std::process::Command;

use support::{agent, agent_wrapped, describe, drbd_node, run_bounded, scratch_dir};

const DTD: &str = "/usr/share/resource-agents/ra-api-1.dtd";
const RNG: &str = "/usr/share/resource-agents/metadata.rng";

fn config_file(label: &str, xml: &str) -> String {
    let dir = scratch_dir(&format!("contract-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vm.xml");
    std::fs::write(&path, xml).unwrap();
    path.to_string_lossy().into_owned()
}

const MINIMAL: &str = "<domain type='qemu'><name>vg-contract</name><memory unit='MiB'>64</memory></domain>";

fn xmllint_validates(schema_flag: &str, schema: &str, xml: &str) {
    if !std::path::Path::new(schema).exists() || support::which("xmllint").is_none() {
        support::missing_prerequisite("resource-agents' schema or xmllint is not installed");
    }
    let file = config_file("metadata", xml);
    let mut command = Command::new("xmllint");
    command.args(["--noout", schema_flag, schema, &file]);
    let out = run_bounded(command, std::time::Duration::from_secs(30));
    assert!(out.status.success(), "meta-data does not validate against {schema}: {}", describe(&out));
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn meta_data_is_only_xml_and_valid_against_the_dtd_and_the_schema() {
    let run = agent("meta-data", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("<?xml"), "stdout must be the XML alone");
    assert!(run.stdout.trim_end().ends_with("</resource-agent>"));
    assert!(run.stderr.is_empty(), "meta-data wrote to stderr: {}", run.stderr);
    // As ocf-tester checks it: against its own document type, which adds
    // OCF 1.1's reloadable and reload-agent to resource-agents' DTD.
    ocf_tester_lint(&run.stdout);
    // resource-agents 4.12's DTD and schema predate OCF 1.1: everything
    // but those two additions must still conform to them.
    let classic = without_ocf_1_1_reload(&run.stdout);
    xmllint_validates("--dtdvalid", DTD, &classic);
    xmllint_validates("--relaxng", RNG, &classic);
}

/// ocf-tester's meta-data check: `xmllint --valid`, the document's
/// `SYSTEM "ra-api-1.dtd"` found beside it (ocf-tester runs it in the DTD's
/// directory, reading stdin).
fn ocf_tester_lint(xml: &str) {
    if !std::path::Path::new(DTD).exists() || support::which("xmllint").is_none() {
        support::missing_prerequisite("resource-agents' DTD or xmllint is not installed");
    }
    let file = config_file("metadata-own-dtd", xml);
    std::fs::copy(DTD, std::path::Path::new(&file).with_file_name("ra-api-1.dtd")).unwrap();
    let mut command = Command::new("xmllint");
    command.args(["--noout", "--valid", &file]);
    let out = run_bounded(command, std::time::Duration::from_secs(30));
    assert!(out.status.success(), "meta-data does not validate against its own document type: {}", describe(&out));
}

/// The meta-data without the internal DTD subset, the reloadable attributes
/// and the reload-agent action.
fn without_ocf_1_1_reload(xml: &str) -> String {
    let doctype_end = xml.find("]>\n").expect("an internal DTD subset") + 3;
    let body = xml[doctype_end..].replace(" reloadable=\"1\"", "").replace(" reloadable=\"0\"", "");
    let body: String = body.lines().filter(|l| !l.starts_with("<action name=\"reload-agent\"")).map(|l| format!("{l}\n")).collect();
    format!("<?xml version=\"1.0\"?>\n{body}")
}

#[test]
fn meta_data_keeps_the_classic_names_defaults_and_timeouts() {
    let xml = agent("meta-data", &[]).stdout;
    for fragment in [
        "<parameter name=\"config\" unique=\"1\" required=\"1\" reloadable=\"0\">",
        "<parameter name=\"hypervisor\" unique=\"0\" required=\"0\" reloadable=\"0\">",
        "<parameter name=\"force_stop\" unique=\"0\" required=\"0\" reloadable=\"1\">",
        "<content type=\"boolean\" default=\"false\"/>",
        "<parameter name=\"migration_downtime\"",
        "<parameter name=\"shutdown_mode\"",
        "<parameter name=\"start_resources\"",
        "<parameter name=\"drbd_resources\"",
        "<parameter name=\"drbd_require_fencing\" unique=\"0\" required=\"0\" reloadable=\"1\">",
        "<action name=\"start\" timeout=\"90s\"/>",
        "<action name=\"stop\" timeout=\"90s\"/>",
        "<action name=\"monitor\" timeout=\"30s\" depth=\"0\" interval=\"10s\"/>",
        "<action name=\"migrate_to\" timeout=\"120s\"/>",
        "<action name=\"migrate_from\" timeout=\"60s\"/>",
        "<action name=\"validate-all\" timeout=\"5s\"/>",
        "<action name=\"reload-agent\" timeout=\"60s\"/>",
    ] {
        assert!(xml.contains(fragment), "meta-data lacks {fragment}");
    }
}

#[test]
fn usage_and_unknown_actions() {
    let usage = agent("usage", &[]);
    assert_eq!(usage.code, 0);
    assert!(usage.stdout.contains("migrate_to"));
    let unknown = agent("promote", &[]);
    assert_eq!(unknown.code, 3, "unknown action must be OCF_ERR_UNIMPLEMENTED");
    assert_eq!(unknown.exit_reason().as_deref(), Some("unknown action 'promote'"));
    let mut command = Command::new(support::agent_symlink());
    command.env_clear();
    let none = run_bounded(command, std::time::Duration::from_secs(30));
    assert_eq!(none.status.code(), Some(2), "no action must be OCF_ERR_ARGS");
}

#[test]
fn missing_config_parameter_is_a_configuration_error() {
    for action in ["start", "validate-all", "migrate_to", "migrate_from"] {
        let run = agent(action, &[]);
        assert_eq!(run.code, 6, "{action}: {}", run.stderr);
        assert_eq!(run.exit_reason().as_deref(), Some("required parameter config is not set"));
    }
}

#[test]
fn config_file_missing_on_this_node() {
    let env = [("OCF_RESKEY_config", "/nonexistent/vm1.xml")];
    let start = agent("start", &env);
    assert_eq!(start.code, 5, "start: {}", start.stderr);
    assert!(start.exit_reason().unwrap().contains("/nonexistent/vm1.xml"));
    assert_eq!(agent("validate-all", &env).code, 5);
    // A probe on a node without the config (e.g. shared storage not mounted) is "not running".
    let probe = agent("monitor", &env);
    assert_eq!(probe.code, 7, "probe: {}", probe.stderr);
    assert_eq!(probe.exit_reason(), None, "a probe answer is not a failure");
    let recurring = agent("monitor", &[env[0], ("OCF_RESKEY_CRM_meta_interval", "10000")]);
    assert_eq!(recurring.code, 1, "recurring monitor: {}", recurring.stderr);
    // Nothing can be running: stop succeeds and does not get the node fenced.
    let stop = agent("stop", &env);
    assert_eq!(stop.code, 0, "stop: {}", stop.stderr);
}

#[test]
fn malformed_parameters_are_configuration_errors_that_name_the_parameter() {
    let config = config_file("malformed", MINIMAL);
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("OCF_RESKEY_migrate_options", "--p2p --frobnicate")], "--frobnicate"),
        (&[("OCF_RESKEY_force_stop", "maybe")], "force_stop"),
        (&[("OCF_RESKEY_migration_speed", "fast")], "migration_speed"),
        (&[("OCF_RESKEY_force_stop", "true"), ("OCF_RESKEY_snapshot", "/tmp")], "force_stop and snapshot"),
        (&[("OCF_RESKEY_shutdown_mode", "acpi,halt")], "shutdown_mode"),
        (&[("OCF_RESKEY_stateless", "true")], "backingfile"),
    ];
    for (extra, named) in cases {
        let mut env = vec![("OCF_RESKEY_config", config.as_str())];
        env.extend_from_slice(extra);
        let run = agent("validate-all", &env);
        assert_eq!(run.code, 6, "{extra:?}: {}", run.stderr);
        let reason = run.exit_reason().unwrap_or_default();
        assert!(reason.contains(named), "{extra:?}: exit reason '{reason}' does not name {named}");
        // The probe rule holds for configuration errors too.
        assert_eq!(agent("monitor", &env).code, 7, "{extra:?} probe");
    }
}

#[test]
fn config_that_is_not_a_domain_is_reported_clearly() {
    for (label, xml, expect) in [
        ("garbage", "this is not xml", "not a libvirt domain XML"),
        ("noname", "<domain type='kvm'><memory>1024</memory></domain>", "no <name>"),
    ] {
        let config = config_file(label, xml);
        let run = agent("validate-all", &[("OCF_RESKEY_config", &config)]);
        assert_eq!(run.code, 5, "{label}: {}", run.stderr);
        assert!(run.exit_reason().unwrap_or_default().contains(expect), "{label}: {}", run.stderr);
    }
}

#[test]
fn node_prerequisites_are_installation_errors() {
    let config = config_file("prereq", MINIMAL);
    let cases: [(&str, &str, &str); 4] = [
        ("OCF_RESKEY_snapshot", "/nonexistent-dir", "snapshot directory"),
        ("OCF_RESKEY_backingfile", "/nonexistent.qcow2", "backingfile"),
        ("OCF_RESKEY_monitor_scripts", "/bin/true /nonexistent/check", "/nonexistent/check"),
        ("OCF_RESKEY_copyindirs", "/etc", "copyindirs"),
    ];
    for (key, value, named) in cases {
        let mut env = vec![("OCF_RESKEY_config", config.as_str()), (key, value)];
        if key == "OCF_RESKEY_copyindirs" {
            env.push(("OCF_RESKEY_backingfile", "/etc/hostname"));
        }
        let run = agent("validate-all", &env);
        if key == "OCF_RESKEY_copyindirs" && support::which("virt-copy-in").is_some() {
            continue;
        }
        assert_eq!(run.code, 5, "{key}: {}", run.stderr);
        assert!(run.exit_reason().unwrap_or_default().contains(named), "{key}: {}", run.stderr);
    }
    let emulator = config_file(
        "emulator",
        "<domain type='kvm'><name>x</name><devices><emulator>/nonexistent/qemu</emulator></devices></domain>",
    );
    let run = agent("validate-all", &[("OCF_RESKEY_config", &emulator)]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.exit_reason().unwrap().contains("/nonexistent/qemu"));
}

#[test]
fn a_valid_configuration_validates() {
    let config = config_file("valid", MINIMAL);
    let run = agent("validate-all", &[("OCF_RESKEY_config", &config), ("OCF_RESKEY_shutdown_mode", "acpi")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn log_lines_go_to_stderr_in_the_agent_format() {
    let run = agent("monitor", &[("OCF_RESKEY_config", "/nonexistent/vm1.xml"), ("OCF_RESOURCE_INSTANCE", "vmX")]);
    assert!(run.stdout.is_empty(), "monitor wrote to stdout: {}", run.stdout);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("VirtualDomain(vmX)[") && l.contains("]: INFO: ")),
        "{}",
        run.stderr
    );
}

/// Rule F1 of the DRBD gate as Pacemaker sees it: a guest on a DRBD
/// resource without a fencing policy validates and starts with a warning;
/// with `drbd_require_fencing` validate-all is OCF_ERR_CONFIGURED and start
/// refuses, the exit reason naming the resource and the rule. The DRBD 8.4
/// state is the real kernel's (tests/fixtures/drbd84-real, through the fake
/// drbdsetup); libvirt's test driver stands in for a hypervisor, so start
/// gets as far as the gate without libvirtd.
#[test]
fn drbd_without_fencing_is_a_warning_or_with_drbd_require_fencing_a_refusal() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let path = format!("{fixtures}/drbd/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let real = format!("{fixtures}/drbd84-real/healthy.alpha");
    let proc = format!("{real}.proc");
    let unfenced = format!("{fixtures}/drbd/84-single");
    let config = config_file(
        "drbd-fencing",
        "<domain type='qemu'><name>vg-contract-drbd</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>\
         <devices><disk type='block' device='disk'><source dev='/dev/drbd0'/><target dev='vda' bus='virtio'/></disk></devices></domain>",
    );
    let env = |show: &str, require: &str| -> Vec<(&'static str, String)> {
        vec![
            ("PATH", path.clone()),
            ("OCF_RESKEY_config", config.clone()),
            ("OCF_RESKEY_hypervisor", "test:///default".into()),
            ("OCF_RESKEY_drbd_require_fencing", require.into()),
            ("VIRTGUARD_FAKE_DRBD_FIXTURE", real.clone()),
            ("VIRTGUARD_FAKE_DRBD_SHOW", show.into()),
        ]
    };
    // The node's /proc/drbd is the real kernel's.
    let node = drbd_node(Some(&proc));
    let node: Vec<&str> = node.iter().map(String::as_str).collect();
    let run = |action: &str, env: &[(&'static str, String)]| {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        agent_wrapped(&node, action, &pairs)
    };
    let warning = "WARNING: DRBD gate: r0: fencing dont-care (volume 0) (rule F1): ";

    let validated = run("validate-all", &env(&unfenced, "false"));
    assert_eq!(validated.code, 0, "{}", validated.stderr);
    assert!(validated.stderr.contains(warning), "{}", validated.stderr);
    // The start goes past the gate (then the test driver has its say).
    let started = run("start", &env(&unfenced, "false"));
    assert!(started.stderr.contains(warning), "{}", started.stderr);
    assert!(started.stderr.contains("DRBD gate: r0 may be used for start"), "{}", started.stderr);

    let refusal = "r0: fencing dont-care (volume 0) (rule F1): refusing to start";
    let validated = run("validate-all", &env(&unfenced, "true"));
    assert_eq!(validated.code, 6, "{}", validated.stderr);
    assert!(validated.exit_reason().unwrap_or_default().starts_with(refusal), "{}", validated.stderr);
    let started = run("start", &env(&unfenced, "true"));
    assert_eq!(started.code, 1, "{}", started.stderr);
    assert!(started.exit_reason().unwrap_or_default().starts_with(refusal), "{}", started.stderr);

    // The lab's `fencing resource-only`, as the kernel printed it: no word about it.
    let validated = run("validate-all", &env(&real, "true"));
    assert_eq!(validated.code, 0, "{}", validated.stderr);
    assert!(!validated.stderr.contains("fencing"), "{}", validated.stderr);
}
