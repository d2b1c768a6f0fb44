//! The VirtualDomain actions.

use crate::ocf::status::OcfStatus;

pub fn run_agent(_action: Option<&str>) -> OcfStatus {
    OcfStatus::ErrUnimplemented
}
