//! Scenarios 30-32 (issue 10): `virtguard adopt` switches running guests
//! between ocf:heartbeat and ocf:virtguard in the lab cluster without a
//! restart, refuses what it must, and finishes or rolls back after being
//! killed half way. They create their own classic-agent guests and delete
//! them at the end of scenario 32.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lab::{self, progress, NODES};
use super::Run;

/// Four guests over both nodes: one in a group, one created with crm.
const GUESTS: [&str; 4] = ["vga-1", "vga-2", "vga-3", "vga-4"];
const GROUP: &str = "vga-grp";
/// A resource that adopt must leave alone (and managed) throughout.
const BYSTANDER: &str = "vga-other";
const CLASSIC: &str = "ocf:heartbeat:VirtualDomain";
const ADOPT_OUTAGE: Duration = Duration::from_secs(1);

fn virtguard_binary() -> String {
    std::env::var("VG_CLUSTER_AGENT_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_virtguard").to_owned())
}

/// Where each guest's QEMU runs, and its pid.
type Pids = HashMap<String, (String, String)>;

impl Run<'_> {
    fn adopt(&self, args: &[&str]) -> std::process::Output {
        let binary = virtguard_binary();
        let mut full = vec![binary.as_str(), "adopt"];
        full.extend_from_slice(args);
        self.lab.run(NODES[0], &full)
    }

    fn adopt_ok(&self, args: &[&str]) -> String {
        let out = self.adopt(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        self.check(out.status.success(), || format!("virtguard adopt {args:?} failed ({}):\n{text}", out.status));
        text
    }

    fn qemu_pids(&self) -> Pids {
        let mut pids = HashMap::new();
        // The nodes share the host's pid namespace: pgrep in a node sees
        // every node's QEMU, so a process belongs to the node that owns it.
        let owned: Vec<(&str, Vec<String>)> = NODES.iter().map(|n| (*n, self.lab.node_pids(n))).collect();
        for guest in GUESTS {
            // Anchored at QEMU's path, so that the command running pgrep (whose
            // arguments hold the pattern) never matches.
            let out = self.lab.run(NODES[0], &["pgrep", "-f", &format!("^/usr/bin/qemu-system-x86_64 .*guest={guest},")]);
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Some((node, _)) = owned.iter().find(|(_, pids)| pids.iter().any(|p| p == pid)) {
                    pids.insert(guest.to_owned(), (node.to_string(), pid.to_owned()));
                }
            }
        }
        pids
    }

    fn provider_of(&self, rsc: &str) -> String {
        let xml = self.lab.crm(&["crm_resource", "-r", rsc, "--query-xml"]);
        lab::parse_elements(&xml, "primitive").first().and_then(|p| p.get("provider").cloned()).unwrap_or_default()
    }

    /// admin_epoch.epoch: any configuration change raises it.
    fn configuration_epoch(&self) -> String {
        let head = self.lab.crm(&["cibadmin", "--query"]);
        lab::parse_elements(&head, "cib").first().map(|c| format!("{}.{}", c["admin_epoch"], c["epoch"])).unwrap_or_default()
    }

    /// adopt never stops a guest: the sampler holds it to that (one round
    /// of silence is allowed, the interval between two reads).
    fn expect_guests_running(&self) {
        for guest in GUESTS {
            self.sampler().expect_running(guest, ADOPT_OUTAGE);
        }
    }

    /// Created stopped, placed by location preference, then started together
    /// (the resources are sticky: a preference added later would not move them).
    fn create_classic_guests(&mut self) {
        let lab = self.lab;
        for (i, guest) in GUESTS.iter().enumerate() {
            let config = format!("config={}", lab.guest(guest));
            // force_stop: the firmware guests ignore ACPI, and the final delete
            // need not wait out a graceful shutdown.
            let common = ["hypervisor=qemu:///system", "migration_transport=tcp", "force_stop=true"];
            if *guest == "vga-3" {
                lab.crm(&[
                    "crm", "configure", "primitive", guest, CLASSIC, "params", &config, common[0], common[1], common[2], "op", "monitor",
                    "interval=10s", "timeout=30s", "meta", "allow-migrate=true", "target-role=Stopped",
                ]);
            } else {
                let mut args = vec!["pcs", "resource", "create", guest, CLASSIC, &config, common[0], common[1], common[2]];
                args.extend_from_slice(&["op", "monitor", "interval=10s", "timeout=30s", "meta", "allow-migrate=true", "--disabled"]);
                if *guest == "vga-2" {
                    args.extend_from_slice(&["--group", GROUP]);
                }
                lab.crm(&args);
            }
            let placed = if *guest == "vga-2" { GROUP } else { guest };
            lab.crm(&["pcs", "constraint", "location", placed, "prefers", &format!("{}=200", NODES[i % 2])]);
        }
        lab.crm(&["pcs", "resource", "create", BYSTANDER, "ocf:pacemaker:Dummy", "op", "monitor", "interval=10s"]);
        let mut enable = vec!["pcs", "resource", "enable"];
        enable.extend_from_slice(&GUESTS);
        lab.crm(&enable);
        lab.wait_idle();
        for (i, guest) in GUESTS.iter().enumerate() {
            self.assert_runs_only_on(guest, guest, NODES[i % 2]);
        }
    }

    /// Same QEMU processes, every guest on its provider, managed, no failure,
    /// and no start/stop/migration of the guests since `since`.
    fn assert_switched_without_restart(&self, provider: &str, before: &Pids, since: &HashMap<String, u64>, label: &str) {
        let after = self.qemu_pids();
        self.check(&after == before, || format!("{label}: QEMU processes changed: before {before:?}, after {after:?}"));
        for guest in GUESTS {
            let now = self.provider_of(guest);
            self.check(now == provider, || format!("{label}: {guest} is on ocf:{now}, expected ocf:{provider}"));
        }
        let mon = self.lab.crm(&["crm_mon", "-1", "--output-as=xml"]);
        let unmanaged: Vec<String> = lab::parse_elements(&mon, "resource").into_iter().filter(|r| r.get("managed").is_some_and(|m| m == "false")).filter_map(|r| r.get("id").cloned()).collect();
        self.check(unmanaged.is_empty(), || format!("{label}: still unmanaged: {unmanaged:?}"));
        self.check(!mon.contains("<failure "), || format!("{label}: failed actions:\n{mon}"));
        // The mark and is-managed are meta attributes, which crm_mon's XML
        // does not show: read them from the CIB, per guest. allow-migrate,
        // set when each guest was created, proves the query sees them.
        for guest in GUESTS {
            let xpath = format!("//primitive[@id='{guest}']/meta_attributes");
            let meta = self.lab.crm(&["cibadmin", "--query", "--xpath", &xpath]);
            let pairs = lab::parse_elements(&meta, "nvpair");
            let value = |name: &str| pairs.iter().find(|p| p.get("name").is_some_and(|n| n == name)).and_then(|p| p.get("value").cloned());
            self.check(value("allow-migrate").as_deref() == Some("true"), || format!("{label}: {guest}'s meta attributes do not show allow-migrate=true:\n{meta}"));
            self.check(value("virtguard-adopt").is_none(), || format!("{label}: {guest} still carries the virtguard-adopt mark:\n{meta}"));
            self.check(value("is-managed").as_deref() != Some("false"), || format!("{label}: {guest} is left is-managed=false:\n{meta}"));
        }
        let moves: Vec<String> = self
            .lab
            .history()
            .into_iter()
            .filter(|op| GUESTS.contains(&op.resource()) && ["start", "stop", "migrate_to", "migrate_from"].contains(&op.operation()))
            .filter(|op| op.call_id() > since.get(op.node()).copied().unwrap_or(0))
            .map(|op| op.describe())
            .collect();
        self.check(moves.is_empty(), || format!("{label}: the cluster started, stopped or migrated guests: {moves:?}"));
        let cib = self.lab.crm(&["cibadmin", "--query", "--scope", "resources"]);
        self.check(!cib.contains("virtguard-adopt"), || format!("{label}: a virtguard-adopt mark is left in the CIB"));
    }

    /// Samples crm_mon while `during` runs: the bystander and the fence device
    /// must never be unmanaged.
    fn watching_bystanders<T>(&self, during: impl FnOnce() -> T) -> T {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let harness = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/harness.sh");
        let watcher = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut samples = 0;
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("bash").arg(&harness).args(["exec", NODES[1], "crm_mon", "-1", "--output-as=xml"]).output();
                    if let Ok(out) = out {
                        samples += 1;
                        for r in lab::parse_elements(&String::from_utf8_lossy(&out.stdout), "resource") {
                            let id = r.get("id").cloned().unwrap_or_default();
                            if !GUESTS.contains(&id.as_str()) && r.get("managed").is_some_and(|m| m == "false") {
                                seen.lock().unwrap().push(id);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                samples
            })
        };
        let result = during();
        stop.store(true, Ordering::Relaxed);
        let samples = watcher.join().unwrap_or(0);
        let seen = seen.lock().unwrap().clone();
        self.check(seen.is_empty(), || format!("other resources were unmanaged during adopt: {seen:?}"));
        self.check(samples > 0, || "the bystander watcher took no sample".to_owned());
        result
    }

    pub(super) fn s30_adopt_all_and_back(&mut self) {
        let lab = self.lab;
        let fences = self.fence_count();
        self.create_classic_guests();
        self.expect_guests_running();
        let before = self.qemu_pids();
        self.check(before.len() == GUESTS.len(), || format!("not every guest has a QEMU process: {before:?}"));

        let dry_epoch = self.configuration_epoch();
        let dry = self.adopt_ok(&["--dry-run", "--all"]);
        self.check(dry.contains("cibadmin --modify --xpath") && GUESTS.iter().all(|g| dry.contains(&format!("--refresh --resource {g}"))), || format!("dry run does not show the plan:\n{dry}"));
        self.check(self.configuration_epoch() == dry_epoch, || "--dry-run changed the CIB".to_owned());

        let since = lab.call_ids();
        let t = Instant::now();
        let out = self.watching_bystanders(|| self.adopt_ok(&["--all"]));
        self.figure("adopt --all: 4 guests heartbeat -> virtguard", format!("{:.1}s", t.elapsed().as_secs_f64()));
        progress(&format!("  adopt said:\n{out}"));
        self.assert_switched_without_restart("virtguard", &before, &since, "adopt --all");

        let since = lab.call_ids();
        let t = Instant::now();
        // Named, not --all: a VirtualDomain resource of an earlier scenario
        // (already on virtguard, so left alone by --all above) stays a bystander.
        let mut back = vec!["--to", "heartbeat"];
        back.extend_from_slice(&GUESTS);
        let out = self.watching_bystanders(|| self.adopt_ok(&back));
        progress(&format!("  adopt --to heartbeat said:\n{out}"));
        self.figure("adopt --to heartbeat vga-1..4: 4 guests back", format!("{:.1}s", t.elapsed().as_secs_f64()));
        self.assert_switched_without_restart("heartbeat", &before, &since, "adopt --to heartbeat --all");
        self.assert_no_fencing_since(fences, "scenario 30");
    }

    fn assert_refused(&self, args: &[&str], expect: &str) {
        let epoch = self.configuration_epoch();
        let out = self.adopt(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        self.check(out.status.code() == Some(1) && text.contains(expect) && text.contains("nothing was changed"), || {
            format!("adopt {args:?} should refuse (exit 1) with {expect:?}, got {}:\n{text}{}", out.status, String::from_utf8_lossy(&out.stdout))
        });
        self.check(self.configuration_epoch() == epoch, || format!("adopt {args:?} refused but changed the CIB"));
        progress(&format!("  refused as expected: {}", text.lines().next().unwrap_or_default()));
    }

    pub(super) fn s31_adopt_refusals(&mut self) {
        let lab = self.lab;
        if self.provider_of(GUESTS[0]) != "heartbeat" {
            self.create_classic_guests();
        }
        // (Not held to "never down": this scenario kills vga-1's QEMU on purpose.)
        // Parameters virtguard's validate-all rejects on this node: the config is missing.
        lab.crm(&["pcs", "resource", "create", "vga-bad", CLASSIC, "config=/nonexistent/vga-bad.xml", "--disabled"]);
        // A VirtualDomain clone (disabled: it never runs).
        let config = format!("config={}", lab.guest("vga-cl"));
        lab.crm(&["pcs", "resource", "create", "vga-cl", CLASSIC, &config, "--disabled"]);
        lab.crm(&["pcs", "resource", "clone", "vga-cl"]);
        lab.wait_idle();
        self.assert_refused(&["vga-bad"], "do not pass ocf:virtguard:VirtualDomain");
        self.assert_refused(&["vga-cl"], "clone");
        self.assert_refused(&[GROUP], "no such primitive");
        self.assert_refused(&[BYSTANDER], "ocf:pacemaker:Dummy");
        // --all refuses as a whole when one resource is refused.
        self.assert_refused(&["--all"], "vga-bad");

        // The guard of the provider change: the modification adopt writes,
        // made against a CIB one epoch older than the live one, fails
        // (cibadmin exit 105, the XPath matches nothing) and writes nothing.
        let version = self.configuration_epoch();
        let (admin_epoch, epoch) = version.split_once('.').expect("admin_epoch.epoch");
        let stale: u64 = epoch.parse::<u64>().expect("numeric epoch") - 1;
        let xpath = format!("/cib[@admin_epoch='{admin_epoch}' and @epoch='{stale}']/configuration/resources//primitive[@id='{}']", GUESTS[0]);
        let xml = format!("<primitive id=\"{}\" provider=\"virtguard\"/>", GUESTS[0]);
        let out = lab.run(NODES[0], &["cibadmin", "--modify", "--xpath", &xpath, "--xml-text", &xml]);
        self.check(out.status.code() == Some(105), || format!("a stale epoch must fail the change: {out:?}"));
        self.check(self.provider_of(GUESTS[0]) == "heartbeat" && self.configuration_epoch() == version, || "the stale change was written".to_owned());
        progress(&format!("  a provider change guarded by epoch {stale} (live {epoch}) failed with exit 105 and changed nothing"));

        // A failed guest: its QEMU killed behind the cluster's back; Pacemaker
        // recovers it and keeps the failed monitor on record.
        let (node, pid) = self.qemu_pids().remove(GUESTS[0]).expect("vga-1 runs");
        lab.must(&node, &["kill", "-9", &pid]);
        lab.poll("the failed monitor of vga-1", Duration::from_secs(60), || {
            lab.crm(&["crm_mon", "-1", "--output-as=xml"]).contains("op_key=\"vga-1_monitor_10000\"").then_some(())
        });
        lab.wait_idle();
        self.assert_refused(&[GUESTS[0]], "failed actions");
        lab.crm(&["crm_resource", "--cleanup", "-r", GUESTS[0]]);
        for rsc in ["vga-bad", "vga-cl"] {
            lab.crm(&["pcs", "resource", "delete", rsc]);
        }
        lab.wait_idle();
    }

    pub(super) fn s32_adopt_killed_then_rerun(&mut self) {
        let lab = self.lab;
        if self.provider_of(GUESTS[0]).is_empty() {
            self.create_classic_guests();
        }
        self.expect_guests_running();
        // Start from the classic agent for all four (named: --all would also
        // take the virtguard resources of earlier scenarios).
        let mut to_classic = vec!["--to", "heartbeat"];
        to_classic.extend_from_slice(&GUESTS);
        let out = self.adopt(&to_classic);
        self.check(out.status.success(), || format!("setup: {}", String::from_utf8_lossy(&out.stderr)));
        let before = self.qemu_pids();

        // Killed once right after its first mark, once right after its first
        // provider change; finished the first time, rolled back the second.
        for (to, back, after_switch) in [("virtguard", "heartbeat", false), ("heartbeat", "virtguard", true)] {
            let since = lab.call_ids();
            let marks = self.kill_adopt_half_way(to, after_switch);
            progress(&format!("  adopt --to {to} killed with {marks} resource(s) marked (after a provider change: {after_switch})"));
            // The state adopt reports for itself: marked and unmanaged.
            let shown = lab.crm(&["cibadmin", "--query", "--scope", "resources"]);
            self.check(shown.contains("virtguard-adopt"), || "the killed run left no mark to resume from".to_owned());
            let finish = if to == "virtguard" { to } else { back };
            let text = self.adopt_ok(&["--to", finish, "--all"]);
            progress(&format!("  rerun --to {finish}:\n{text}"));
            self.assert_switched_without_restart(finish, &before, &since, &format!("rerun --to {finish} after a killed --to {to}"));
        }
        for guest in GUESTS {
            self.sampler().release(guest);
        }
        for guest in GUESTS.iter().filter(|g| **g != "vga-2").chain([&GROUP, &BYSTANDER]) {
            let _ = lab.run(lab.any_node(), &["pcs", "resource", "delete", guest]);
        }
        lab.wait_idle();
    }

    /// Runs `adopt --to TO` (--all, or the four guests toward heartbeat) and kills it as soon as the CIB shows its
    /// first mark (or, with `after_switch`, its first marked resource on the
    /// new provider). Returns how many resources were marked then.
    fn kill_adopt_half_way(&self, to: &str, after_switch: bool) -> usize {
        let harness = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/harness.sh");
        let binary = virtguard_binary();
        let mut child = Command::new("bash")
            .arg(&harness)
            .args(["exec", NODES[0], &binary, "adopt", "--to", to])
            .args(if to == "virtguard" { &["--all"][..] } else { &GUESTS[..] })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawning adopt");
        let marks = self.lab.poll("adopt's first mark", Duration::from_secs(60), || {
            let resources = self.lab.crm(&["cibadmin", "--query", "--scope", "resources"]);
            let marks = resources.matches("name=\"virtguard-adopt\"").count();
            let switched = resources.contains(&format!("provider=\"{to}\""));
            (marks > 0 && (switched || !after_switch)).then_some(marks)
        });
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        marks
    }
}
