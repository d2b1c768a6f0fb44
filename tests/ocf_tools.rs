//! resource-agents' own tools against the built agent and a real guest:
//! ocf-tester, and ocft with the cases in ocf/ocft/VirtualDomain.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{agent_symlink, describe, ensure_libvirtd, firmware_guest, run_bounded, which, HOST_URI};

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn ocf_tester_passes_against_a_real_guest() {
    ensure_libvirtd();
    if which("ocf-tester").is_none() {
        support::missing_prerequisite("ocf-tester (resource-agents) is not installed");
    }
    let guest = firmware_guest("vg-ocftester");
    let mut command = Command::new("ocf-tester");
    command
        .args(["-n", &guest.name])
        .arg("-o")
        .arg(format!("config={}", guest.xml.display()))
        .args(["-o", &format!("hypervisor={HOST_URI}"), "-o", "force_stop=true"])
        .arg(agent_symlink());
    let out = run_bounded(command, Duration::from_secs(600));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("passed all tests"), "ocf-tester: {}", describe(&out));
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn ocft_cases_pass_against_a_real_guest() {
    ensure_libvirtd();
    if which("ocft").is_none() {
        support::missing_prerequisite("ocft (resource-agents) is not installed");
    }
    let guest = firmware_guest("vg-ocft");
    let cases = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ocf/ocft/VirtualDomain")).unwrap();
    let agent_root = agent_symlink().parent().unwrap().to_path_buf();
    let cases = cases
        .replace("@AGENT_ROOT@", &agent_root.to_string_lossy())
        .replace("@CONFIG@", &guest.xml.to_string_lossy())
        .replace("@HYPERVISOR@", HOST_URI);
    let dir = guest.dir.join("ocft");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("VirtualDomain"), cases).unwrap();

    // Generated scripts of an earlier, longer case file would run too.
    let mut clean = Command::new("ocft");
    clean.args(["clean", "VirtualDomain"]);
    run_bounded(clean, Duration::from_secs(60));

    let mut make = Command::new("ocft");
    make.args(["make", "-d"]).arg(&dir).arg("VirtualDomain");
    let made = run_bounded(make, Duration::from_secs(120));
    assert!(made.status.success(), "ocft make: {}", describe(&made));

    let mut test = Command::new("ocft");
    test.args(["test", "VirtualDomain"]);
    let out = run_bounded(test, Duration::from_secs(900));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ocft test: {}", describe(&out));
    assert!(!text.contains("ERROR:") && !text.to_lowercase().contains("failed"), "ocft reported failures:\n{text}");
    assert!(text.contains("validate-all"), "ocft did not run our cases:\n{text}");
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let mut command = Command::new(program);
    command.args(args).env("LC_ALL", "C");
    let out = run_bounded(command, Duration::from_secs(120));
    assert!(out.status.success(), "{program} {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn the_installed_agent_is_known_to_pcs_crmsh_and_crm_resource() {
    ensure_libvirtd();
    support::install_agent();
    for tool in ["pcs", "crm", "crm_resource"] {
        if which(tool).is_none() {
            support::missing_prerequisite(&format!("{tool} is not installed"));
        }
    }
    let agent = "ocf:virtguard:VirtualDomain";
    let metadata = run_ok("crm_resource", &["--show-metadata", agent]);
    assert!(metadata.contains("<resource-agent name=\"VirtualDomain\""), "{metadata}");
    let described = run_ok("pcs", &["resource", "describe", agent]);
    assert!(described.contains("config") && described.contains("migration_transport"), "{described}");
    let info = run_ok("crm", &["ra", "info", agent]);
    assert!(info.contains("shutdown_mode") && info.contains("migrate_to"), "{info}");

    let guest = firmware_guest("vg-validate");
    let config = format!("config={}", guest.xml.display());
    let valid = |options: &[&str]| {
        let mut args = vec!["--validate", "--class", "ocf", "--provider", "virtguard", "--agent", "VirtualDomain"];
        for o in options {
            args.extend(["--option", o]);
        }
        let mut command = Command::new("crm_resource");
        command.args(&args);
        run_bounded(command, Duration::from_secs(60))
    };
    let ok = valid(&[&config]);
    assert!(ok.status.success(), "crm_resource --validate: {}", describe(&ok));
    let bad = valid(&[&config, "force_stop=perhaps"]);
    assert!(!bad.status.success(), "a malformed boolean must not validate: {}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("force_stop") || String::from_utf8_lossy(&bad.stderr).contains("force_stop"), "{}", describe(&bad));

    let man = std::path::Path::new("/usr/local/share/man/man7/ocf_virtguard_VirtualDomain.7");
    let page = std::fs::read_to_string(man).expect("man page installed");
    assert!(page.contains("drbd_resources") && page.starts_with(".TH"), "{page}");
}
