//! Everything an agent call reaches outside its own process, chosen once at
//! the entry point: the hypervisor it connects to, the node's processes
//! (the emulator of a domain, when libvirtd cannot answer), the DRBD state
//! under its disks, the services it
//! calls (systemd, Pacemaker's crm_resource, csync2), the node's own name,
//! the clock its deadlines read, and whether a watchdog ends the process at
//! the timeout. The binary takes [`Host::real`]; the in-process
//! tests run the whole pipeline on fakes, where a watchdog would exit the
//! test process and a manual clock makes minutes of waiting take none.

pub mod emulator;
#[cfg(test)]
pub(crate) mod fake_processes;
#[cfg(test)]
pub(crate) mod fake_services;
pub mod node;
pub mod processes;
pub mod services;
pub(crate) mod systemd;

use std::sync::Arc;

use crate::deadline::{Clock, Deadline};
use crate::drbd::{DrbdSource, Sources};
use crate::hypervisor::{HvResult, Hypervisor};
use crate::ocf::{Action, OcfEnv};

use self::node::NodeName;
use self::processes::{ProcFs, Processes};
use self::services::{RealServices, Services};

/// A connection to a hypervisor, whatever its kind.
pub type Connection = Box<dyn Hypervisor + Send + Sync>;
type Connector = dyn Fn(Option<&str>) -> HvResult<Connection> + Send + Sync;

#[derive(Clone)]
pub struct Host {
    connector: Arc<Connector>,
    processes: Arc<dyn Processes>,
    drbd: Arc<dyn DrbdSource>,
    services: Arc<dyn Services>,
    node: NodeName,
    clock: Clock,
    watchdog: bool,
}

impl Host {
    /// This node: libvirt, /proc, its DRBD, the kernel's hostname, the
    /// system clock, and the watchdog.
    pub fn real() -> Host {
        Host {
            connector: Arc::new(|uri| crate::hypervisor::connect(uri).map(|hv| Box::new(hv) as Connection)),
            processes: Arc::new(ProcFs::new()),
            drbd: Arc::new(Sources::default()),
            services: Arc::new(RealServices),
            node: NodeName::Kernel,
            clock: Clock::System,
            watchdog: true,
        }
    }

    /// Every connection made through `connect`, on an empty process table,
    /// a node without DRBD, services that only record their calls, a node named "node-test" and
    /// the system clock, without a watchdog; the methods below change one of
    /// them.
    #[cfg(test)]
    pub fn with(connect: impl Fn(Option<&str>) -> HvResult<Connection> + Send + Sync + 'static) -> Host {
        Host {
            connector: Arc::new(connect),
            processes: Arc::new(fake_processes::FakeProcesses::new()),
            drbd: Arc::new(no_drbd()),
            services: Arc::new(fake_services::FakeServices::new()),
            node: NodeName::Fixed("node-test".into()),
            clock: Clock::System,
            watchdog: false,
        }
    }

    #[cfg(test)]
    pub fn with_processes(self, processes: impl Processes + 'static) -> Host {
        Host { processes: Arc::new(processes), ..self }
    }

    #[cfg(test)]
    pub fn with_drbd(self, drbd: impl DrbdSource + 'static) -> Host {
        Host { drbd: Arc::new(drbd), ..self }
    }

    #[cfg(test)]
    pub fn with_services(self, services: impl Services + 'static) -> Host {
        Host { services: Arc::new(services), ..self }
    }

    #[cfg(test)]
    pub fn with_clock(self, clock: Clock) -> Host {
        Host { clock, ..self }
    }

    pub fn connect(&self, uri: Option<&str>) -> HvResult<Connection> {
        (self.connector)(uri)
    }

    pub fn processes(&self) -> &dyn Processes {
        &*self.processes
    }

    pub fn drbd(&self) -> &dyn DrbdSource {
        &*self.drbd
    }

    pub fn services(&self) -> &dyn Services {
        &*self.services
    }

    /// The process table for a thread that outlives the borrow (the watchdog).
    pub fn shared_processes(&self) -> Arc<dyn Processes> {
        self.processes.clone()
    }

    /// This node's name, when Pacemaker did not pass it.
    pub fn node_name(&self) -> Option<String> {
        self.node.get()
    }

    /// The deadline of `action`: its timeout from the call, as Pacemaker's
    /// timer counts it. The call must have been stamped on this host's
    /// clock: an instant of one clock means nothing on another.
    pub fn deadline(&self, env: &OcfEnv, action: Action) -> Deadline {
        assert!(env.clock.same_as(self.clock), "the call was stamped on another clock than the host's");
        env.deadline(action)
    }

    pub fn watchdog(&self) -> bool {
        self.watchdog
    }
}

/// A node where DRBD's tools are not installed.
#[cfg(test)]
fn no_drbd() -> Sources {
    Sources {
        proc_drbd: "/nonexistent/proc/drbd".into(),
        by_res_dir: "/nonexistent/by-res".into(),
        drbdsetup: "/nonexistent/drbdsetup".into(),
        drbdadm: "/nonexistent/drbdadm".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hypervisor::{HvError, HvErrorKind};

    fn host() -> Host {
        Host::with(|_| Err(HvError::new(HvErrorKind::Unreachable, "no hypervisor in this test")))
    }

    fn stop_call_on(clock: Clock) -> OcfEnv {
        OcfEnv::from_lookup_on(clock, &|name| (name == "OCF_RESKEY_CRM_meta_timeout").then(|| "4000".to_owned()))
    }

    /// Work done before the deadline is asked for counts against it, on
    /// either clock: Pacemaker's timer started at the call.
    #[test]
    fn the_deadline_counts_from_the_call_on_the_manual_clock_as_on_the_system_clock() {
        let clock = Clock::manual();
        let env = stop_call_on(clock);
        clock.sleep(Duration::from_secs(3));
        let deadline = host().with_clock(clock).deadline(&env, Action::Stop);
        assert_eq!(deadline.elapsed(), Duration::from_secs(3));
        assert_eq!(deadline.remaining(), Duration::from_secs(1));

        let mut env = stop_call_on(Clock::System);
        env.called_at -= Duration::from_secs(3);
        let remaining = host().deadline(&env, Action::Stop).remaining();
        assert!(remaining <= Duration::from_secs(1), "{remaining:?} left of 4 s, 3 s after the call");
    }

    #[test]
    #[should_panic(expected = "another clock")]
    fn a_call_stamped_on_another_clock_is_a_test_setup_error() {
        host().with_clock(Clock::manual()).deadline(&stop_call_on(Clock::manual()), Action::Stop);
    }
}
