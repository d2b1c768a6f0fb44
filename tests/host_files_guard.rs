//! The guard that fails a test binary which changed the host's configuration
//! (tests/support/host_files.rs), proven on a private directory tree: it must
//! name every kind of change, and nothing else.

mod support;

use support::host_files::{self, differences, fingerprint};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

struct Tree(PathBuf);

impl Tree {
    fn new(label: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("vg-host-files-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/libvirt/qemu")).unwrap();
        std::fs::create_dir_all(dir.join("ocf/virtguard")).unwrap();
        std::fs::write(dir.join("etc/csync2.cfg"), "# example\n").unwrap();
        std::fs::write(dir.join("etc/libvirt/libvirtd.conf"), "listen_tls = 0\n").unwrap();
        std::fs::write(dir.join("ocf/virtguard/VirtualDomain"), "agent v1\n").unwrap();
        std::os::unix::fs::symlink("libvirtd.conf", dir.join("etc/libvirt/link")).unwrap();
        Tree(dir)
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }

    fn roots(&self) -> Vec<String> {
        vec![self.path("etc/csync2.cfg"), self.path("etc/libvirt"), self.path("ocf")]
    }

    fn take(&self) -> host_files::Fingerprint {
        let roots = self.roots();
        let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
        let excluded = self.path("ocf/virtguard");
        fingerprint(&roots, &[excluded.as_str()])
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn changes_after(label: &str, change: impl FnOnce(&Tree)) -> Vec<String> {
    let tree = Tree::new(label);
    let before = tree.take();
    change(&tree);
    let lines = differences(&before, &tree.take());
    let prefix = format!("{}/", tree.0.display());
    lines.into_iter().map(|l| l.replace(&prefix, "")).collect()
}

#[test]
fn an_untouched_tree_has_no_differences() {
    assert_eq!(changes_after("same", |_| {}), Vec::<String>::new());
}

#[test]
fn reading_and_rewriting_the_same_bytes_in_place_is_no_change() {
    let lines = changes_after("rewrite", |t| std::fs::write(t.path("etc/csync2.cfg"), "# example\n").unwrap());
    assert_eq!(lines, Vec::<String>::new());
}

#[test]
fn each_kind_of_change_is_named() {
    assert_eq!(
        changes_after("content", |t| std::fs::write(t.path("etc/csync2.cfg"), "group x {}\n").unwrap()),
        ["changed: etc/csync2.cfg (content)"]
    );
    assert_eq!(changes_after("removed", |t| std::fs::remove_file(t.path("etc/csync2.cfg")).unwrap()), ["removed: etc/csync2.cfg"]);
    assert_eq!(
        changes_after("created", |t| std::fs::write(t.path("etc/libvirt/qemu/vgt-x.xml"), "<domain/>").unwrap()),
        ["created: etc/libvirt/qemu/vgt-x.xml"]
    );
    // Same bytes, new inode: what `mv tmp file` or a test's restore does.
    assert_eq!(
        changes_after("replaced", |t| {
            let tmp = t.path("etc/libvirt/new");
            std::fs::write(&tmp, "listen_tls = 0\n").unwrap();
            std::fs::rename(&tmp, t.path("etc/libvirt/libvirtd.conf")).unwrap();
        }),
        ["changed: etc/libvirt/libvirtd.conf (replaced by another file)"]
    );
    assert_eq!(
        changes_after("mode", |t| std::fs::set_permissions(t.path("etc/csync2.cfg"), std::fs::Permissions::from_mode(0o600)).unwrap()),
        ["changed: etc/csync2.cfg (mode)"]
    );
    assert_eq!(
        changes_after("link", |t| {
            std::fs::remove_file(t.path("etc/libvirt/link")).unwrap();
            std::os::unix::fs::symlink("elsewhere", t.path("etc/libvirt/link")).unwrap();
        }),
        ["changed: etc/libvirt/link (link)"]
    );
}

#[test]
fn what_the_suite_installs_on_purpose_is_not_watched() {
    let lines = changes_after("excluded", |t| std::fs::write(t.path("ocf/virtguard/VirtualDomain"), "agent v2\n").unwrap());
    assert_eq!(lines, Vec::<String>::new());
}

const VICTIM_ENV: &str = "VG_HOST_FILES_GUARD_VICTIM";

/// Not a test of its own (hence ignored): the test below runs it inside a
/// private mount namespace whose /etc is an overlay, where it changes a
/// watched file the way the old csync2 test did: the guard must then fail
/// this process.
#[test]
#[ignore = "run by a_test_binary_that_changes_etc_fails_and_names_the_file, in a private mount namespace"]
fn victim_that_changes_etc_when_asked() {
    assert!(std::env::var_os(VICTIM_ENV).is_some(), "only for a private mount namespace whose /etc is an overlay");
    host_files::watch_host_files();
    std::fs::write("/etc/csync2.cfg", "group vgtest { host x; }\n").unwrap();
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_test_binary_that_changes_etc_fails_and_names_the_file() {
    if !nix::unistd::Uid::effective().is_root() {
        support::missing_prerequisite("a private mount namespace needs root");
    }
    // The host's libvirtd is started (if it can be) in the host's namespaces
    // here, not by the victim's guard inside its private one.
    host_files::watch_host_files();
    let scratch = Tree::new("victim");
    let upper = scratch.0.join("upper");
    let work = scratch.0.join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        "mount -t overlay vg-guard -o lowerdir=/etc,upperdir={},workdir={} /etc && exec \"$@\"",
        upper.display(),
        work.display()
    );
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", &script, "sh"])
        .arg(&exe)
        .args(["--exact", "victim_that_changes_etc_when_asked", "--ignored", "--test-threads", "1"])
        .env(VICTIM_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(upper.join("csync2.cfg").exists(), "the victim did not run in the namespace: {stderr}");
    assert_eq!(output.status.code(), Some(101), "the guard must fail the binary: {stderr}");
    assert!(stderr.contains("/etc/csync2.cfg"), "the guard must name the file: {stderr}");
}

#[test]
fn definitions_of_other_running_test_processes_are_theirs_to_judge() {
    let own = std::process::id();
    let facts = host_files::Facts::Directory { mode: 0o755 };
    let found: host_files::Fingerprint = [
        format!("/etc/libvirt/qemu/vgt-a-{own}-0.xml"),
        // PID 1 runs as long as the machine does.
        "/etc/libvirt/qemu/vgt-b-1-0.xml".to_owned(),
        // No process has this pid (above the kernel's pid_max).
        "/etc/libvirt/qemu/vgt-c-99999999-0.xml".to_owned(),
        "/etc/libvirt/libvirtd.conf".to_owned(),
    ]
    .into_iter()
    .map(|p| (PathBuf::from(p), facts.clone()))
    .collect();
    let kept: Vec<String> = host_files::not_of_other_tests(&found).keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        kept,
        [
            "/etc/libvirt/libvirtd.conf".to_owned(),
            format!("/etc/libvirt/qemu/vgt-a-{own}-0.xml"),
            "/etc/libvirt/qemu/vgt-c-99999999-0.xml".to_owned()
        ]
    );
}
