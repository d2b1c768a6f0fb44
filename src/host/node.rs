//! Which node this is, when Pacemaker did not say: the kernel's hostname,
//! or a name the in-process tests give.

/// Where the node's own name comes from.
#[derive(Debug, Clone)]
pub enum NodeName {
    /// /proc/sys/kernel/hostname, read when asked.
    Kernel,
    Fixed(String),
}

impl NodeName {
    /// The name, if there is one (an empty hostname is none).
    pub fn get(&self) -> Option<String> {
        match self {
            NodeName::Kernel => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
            NodeName::Fixed(name) => Some(name.clone()),
        }
    }
}
