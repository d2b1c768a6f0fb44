//! The Debian package (issue 10), built by `ocf/build-deb.sh` with cargo-deb:
//! lintian finds no error, and inside a private mount namespace whose /usr,
//! /etc and /var are overlays over the host's (tests/package/in-overlay.sh:
//! the host's files and dpkg database stay untouched) it installs with apt,
//! `pcs resource describe` sees the agent, an upgrade under a loop of monitors
//! of a real guest fails none of them, and the remove leaves nothing behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{describe, ensure_libvirtd, firmware_guest, run_bounded, scratch_dir, missing_prerequisite, which, HOST_URI};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn prerequisites() {
    if !nix::unistd::Uid::effective().is_root() {
        missing_prerequisite("installing a package into an overlay needs root");
    }
    for tool in ["cargo-deb", "lintian", "dpkg", "apt-get", "unshare", "pcs"] {
        if which(tool).is_none() && !Path::new(&format!("{}/.cargo/bin/{tool}", std::env::var("HOME").unwrap_or_default())).is_file() {
            missing_prerequisite(&format!("{tool} is not installed (ocf/install-deps.sh installs it)"));
        }
    }
    ensure_libvirtd();
}

/// Runs ocf/build-deb.sh with `args`, returns the one .deb it wrote into `out`.
fn build_deb(out: &Path, args: &[&str]) -> PathBuf {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let mut command = Command::new("bash");
    command.arg(format!("{MANIFEST_DIR}/ocf/build-deb.sh")).args(args).arg("--output").arg(out);
    // cargo deb is found in ~/.cargo/bin even when PATH lacks it.
    let path = format!("{}:{}/.cargo/bin", std::env::var("PATH").unwrap_or_default(), std::env::var("HOME").unwrap_or_default());
    command.env("PATH", path);
    let output = run_bounded(command, Duration::from_secs(900));
    assert!(output.status.success(), "ocf/build-deb.sh {args:?}: {}", describe(&output));
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "expected one .deb in {}: {debs:?}", out.display());
    debs[0].clone()
}

fn stdout_of(program: &str, args: &[&std::ffi::OsStr]) -> String {
    let mut command = Command::new(program);
    command.args(args);
    let output = run_bounded(command, Duration::from_secs(60));
    assert!(output.status.success(), "{program}: {}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn read(work: &Path, name: &str) -> String {
    std::fs::read_to_string(work.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn package_builds_lints_installs_upgrades_under_monitors_and_removes_cleanly() {
    prerequisites();
    let work = scratch_dir(&format!("package-{}", std::process::id()));
    let version = env!("CARGO_PKG_VERSION");
    let old_deb = build_deb(&work.join("old"), &[]);
    assert_eq!(old_deb.file_name().unwrap().to_string_lossy(), format!("virtguard_{version}-1_amd64.deb"));
    let new_version = format!("{version}-2");
    let new_deb = build_deb(&work.join("new"), &["--deb-version", &new_version]);

    let contents = stdout_of("dpkg-deb", &["--contents".as_ref(), old_deb.as_os_str()]);
    for expected in [
        "./usr/sbin/virtguard",
        "./usr/lib/ocf/resource.d/virtguard/VirtualDomain -> ../../../../sbin/virtguard",
        "./usr/share/man/man7/ocf_virtguard_VirtualDomain.7.gz",
        "./usr/share/doc/virtguard/README.md",
        "./usr/share/doc/virtguard/copyright",
    ] {
        assert!(contents.contains(expected), "{expected} is not in the package:\n{contents}");
    }
    let depends = stdout_of("dpkg-deb", &["--field".as_ref(), old_deb.as_os_str(), "Depends".as_ref()]);
    for dependency in ["libvirt0", "pacemaker-cli-utils"] {
        assert!(depends.contains(dependency), "Depends lacks {dependency}: {depends}");
    }
    assert!(!depends.contains("-dev"), "a build-only dependency in Depends: {depends}");

    let mut lintian = Command::new("lintian");
    lintian.arg(&old_deb);
    let lintian = run_bounded(lintian, Duration::from_secs(300));
    let report = String::from_utf8_lossy(&lintian.stdout).into_owned();
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty() && lintian.status.success(), "lintian reports errors: {}", describe(&lintian));

    let guest = {
        let mut guest = firmware_guest("vg-package");
        guest.define_and_start(HOST_URI);
        guest
    };
    let host_dpkg_status_before = std::fs::read("/var/lib/dpkg/status").expect("reading the host's dpkg status");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "bash"])
        .arg(format!("{MANIFEST_DIR}/tests/package/in-overlay.sh"))
        .arg(&old_deb)
        .arg(&new_deb)
        .arg(&guest.xml)
        .arg(&work);
    let run = run_bounded(command, Duration::from_secs(600));
    assert!(
        run.status.success(),
        "in-overlay.sh: {}\ninstall: {}\nupgrade: {}",
        describe(&run),
        std::fs::read_to_string(work.join("install.log")).unwrap_or_default(),
        std::fs::read_to_string(work.join("upgrade.log")).unwrap_or_default()
    );
    assert_eq!(std::fs::read("/var/lib/dpkg/status").unwrap(), host_dpkg_status_before, "the host's dpkg database changed");
    assert!(!Path::new("/usr/share/doc/virtguard").exists(), "the package reached the host's /usr");

    let described = read(&work, "describe.txt");
    assert!(described.starts_with("ocf:virtguard:VirtualDomain"), "pcs resource describe: {described}");
    assert!(described.contains("drbd_resources"), "pcs resource describe lacks virtguard's parameters: {described}");

    let upgrade = read(&work, "upgrade.txt");
    let upgrade: Vec<u128> = upgrade.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let (upgrade_start, upgrade_end, old_inode, new_inode) = (upgrade[0], upgrade[1], upgrade[2], upgrade[3]);
    // dpkg unpacks beside the file and renames over it: a new inode, and
    // processes still running the old one keep it.
    assert_ne!(old_inode, new_inode, "the upgrade did not replace /usr/sbin/virtguard");
    assert_eq!(read(&work, "version-after-upgrade.txt").trim(), new_version);
    let monitors: Vec<(i32, u128, u128)> = read(&work, "monitors.txt")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let failed: Vec<&(i32, u128, u128)> = monitors.iter().filter(|m| m.0 != 0).collect();
    assert!(failed.is_empty(), "monitors failed around the upgrade: {failed:?}\n{}", read(&work, "monitor-stderr.txt"));
    let during = monitors.iter().filter(|m| m.2 > upgrade_start && m.1 < upgrade_end).count();
    assert!(during > 0, "no monitor ran while the package was upgraded ({} monitors)", monitors.len());
    eprintln!("{} monitors, {during} of them during the upgrade, all returned 0", monitors.len());

    let leftovers = read(&work, "leftovers.txt");
    let removed = read(&work, "removed.txt");
    assert!(leftovers.trim().is_empty(), "the remove left behind:\n{leftovers}");
    assert!(removed.trim().is_empty(), "install + remove deleted files that were there before:\n{removed}");
    let _ = std::fs::remove_dir_all(&work);
    drop(guest);
}
