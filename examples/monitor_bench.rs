//! Monitor cost, side by side in one run against the same running guest:
//! virtguard at monitor depth 0, 10 (guest agent ping) and 20 (also the
//! guest's file systems), the classic ocf:heartbeat:VirtualDomain, and a bare
//! libvirt client call (`virsh domstate`) as the floor. Calls are interleaved
//! so the noise of a shared 2-core machine hits all of them alike. The guest
//! is the lab's guest with a real qemu-ga (tests/lab/agent-guest-assets.sh).
//!
//!     cargo build --release && cargo run --release --example monitor_bench -- [ROUNDS]
//!
//! Needs root, a running libvirtd (qemu:///system), resource-agents, and what
//! the lab guest needs (busybox-static, cpio, the cloud kernel, apt-get).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

#[path = "../tests/support/guest_xml.rs"]
#[allow(dead_code)]
mod guest_xml;
use guest_xml::{Boot, DomainType, GuestXml};

const URI: &str = "qemu:///system";
const CLASSIC: &str = "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain";

struct Sample {
    wall: Duration,
    cpu: Duration,
    forks: u64,
}

fn children_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Processes created on the whole machine so far (`processes` in /proc/stat).
fn forks_so_far() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines().find_map(|l| l.strip_prefix("processes ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

fn measure(command: &mut Command, expect: i32) -> Sample {
    let cpu0 = children_cpu();
    let forks0 = forks_so_far();
    let started = Instant::now();
    let status = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("spawn");
    let wall = started.elapsed();
    let forks = forks_so_far().saturating_sub(forks0);
    assert_eq!(status.code(), Some(expect), "{command:?} answered {status}");
    Sample { wall, cpu: children_cpu().saturating_sub(cpu0), forks }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort();
    values[values.len() / 2]
}

fn agent_command(program: &Path, config: &Path, state_dir: &Path, level: &str) -> Command {
    let mut c = Command::new(program);
    c.arg("monitor")
        .env("OCF_CHECK_LEVEL", level)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RA_VERSION_MAJOR", "1")
        .env("OCF_RA_VERSION_MINOR", "1")
        .env("OCF_RESOURCE_INSTANCE", "bench")
        .env("OCF_RESKEY_config", config)
        .env("OCF_RESKEY_hypervisor", URI)
        .env("OCF_RESKEY_CRM_meta_interval", "10000")
        .env("OCF_RESKEY_CRM_meta_timeout", "30000")
        .env("OCF_RESKEY_crm_feature_set", "3.16.2")
        .env("HA_RSCTMP", state_dir);
    c
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(40);
    let work = std::env::temp_dir().join(format!("vg-monitor-bench-{}", std::process::id()));
    std::fs::create_dir_all(work.join("rsc-virtguard")).unwrap();
    std::fs::create_dir_all(work.join("rsc-classic")).unwrap();
    let name = format!("vg-bench-{}", std::process::id());
    let config = work.join("bench.xml");
    let assets = Command::new("sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/agent-guest-assets.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running agent-guest-assets.sh");
    assert!(assets.status.success(), "agent-guest-assets.sh failed");
    let lab = PathBuf::from(String::from_utf8_lossy(&assets.stdout).trim());
    std::fs::write(
        &config,
        // One element per line (as GuestXml writes it): the classic agent finds the name with grep.
        GuestXml::new(
            &name,
            DomainType::Qemu,
            160,
            Boot::Kernel {
                kernel: lab.join("vmlinuz"),
                initrd: lab.join("initrd-agent.img"),
                cmdline: "console=ttyS0 rdinit=/init.agent vglab=idle".to_owned(),
            },
        )
        .emulator()
        .guest_agent_channel()
        .build(),
    )
    .unwrap();
    let created = Command::new("virsh").args(["-c", URI, "create"]).arg(&config).stdout(Stdio::null()).status().unwrap();
    assert!(created.success(), "virsh create failed");
    let agent_up = (0..240).any(|_| {
        std::thread::sleep(Duration::from_millis(500));
        Command::new("virsh")
            .args(["-c", URI, "qemu-agent-command", "--timeout", "5", &name, r#"{"execute":"guest-ping"}"#])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(agent_up, "the guest agent of {name} never answered");

    let release_dir: PathBuf = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let link = work.join("VirtualDomain");
    std::os::unix::fs::symlink(release_dir.join("virtguard"), &link).unwrap();

    let mut ours = Vec::new();
    let mut ours10 = Vec::new();
    let mut ours20 = Vec::new();
    let mut classic = Vec::new();
    let mut floor = Vec::new();
    let mut virsh = Command::new("virsh");
    virsh.args(["-c", URI, "domstate", &name]);
    for round in 0..rounds + 3 {
        let a = measure(&mut agent_command(&link, &config, &work.join("rsc-virtguard"), "0"), 0);
        let a10 = measure(&mut agent_command(&link, &config, &work.join("rsc-virtguard"), "10"), 0);
        let a20 = measure(&mut agent_command(&link, &config, &work.join("rsc-virtguard"), "20"), 0);
        let b = measure(&mut agent_command(Path::new(CLASSIC), &config, &work.join("rsc-classic"), "0"), 0);
        let c = measure(&mut virsh, 0);
        if round >= 3 {
            ours.push(a);
            ours10.push(a10);
            ours20.push(a20);
            classic.push(b);
            floor.push(c);
        }
    }
    let _ = Command::new("virsh").args(["-c", URI, "destroy", &name]).stdout(Stdio::null()).status();
    let _ = std::fs::remove_dir_all(&work);

    let summary = |samples: &[Sample]| {
        (
            median(samples.iter().map(|s| s.wall).collect()),
            median(samples.iter().map(|s| s.cpu).collect()),
            median_u64(samples.iter().map(|s| s.forks).collect()),
        )
    };
    let (ow, oc, of) = summary(&ours);
    let (tw, tc, tf) = summary(&ours10);
    let (uw, uc, uf) = summary(&ours20);
    let (cw, cc, cf) = summary(&classic);
    let (fw, fc, ff) = summary(&floor);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("monitor of one running guest, {rounds} interleaved rounds, medians:\n");
    println!("| caller | wall ms | CPU ms | processes |");
    println!("|---|---:|---:|---:|");
    println!("| classic ocf:heartbeat:VirtualDomain | {:.1} | {:.1} | {cf} |", ms(cw), ms(cc));
    println!("| virtguard | {:.1} | {:.1} | {of} |", ms(ow), ms(oc));
    println!("| virtguard, OCF_CHECK_LEVEL=10 (guest-ping) | {:.1} | {:.1} | {tf} |", ms(tw), ms(tc));
    println!("| virtguard, OCF_CHECK_LEVEL=20 (+ file systems) | {:.1} | {:.1} | {uf} |", ms(uw), ms(uc));
    println!("| virsh domstate (floor) | {:.1} | {:.1} | {ff} |", ms(fw), ms(fc));
    println!();
    println!("classic / virtguard: wall {:.1}x, CPU {:.1}x", ms(cw) / ms(ow), ms(cc) / ms(oc).max(0.001));
    println!("virtguard / floor:   wall {:.2}x, CPU {:.2}x", ms(ow) / ms(fw), ms(oc) / ms(fc).max(0.001));
    println!("level 10 - level 0:  wall {:+.1} ms, CPU {:+.1} ms", ms(tw) - ms(ow), ms(tc) - ms(oc));
}
