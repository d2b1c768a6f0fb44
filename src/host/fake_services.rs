//! Services that only record what the agent asked of them, for the
//! in-process tests: every call succeeds.

use std::sync::{Arc, Mutex};

use crate::deadline::Deadline;
use crate::exec::ExecError;

use super::services::Services;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCall {
    OrderGuestsBeforeLibvirt,
    SetUtilization { instance: String, attribute: String, value: String },
    DeleteUtilization { instance: String, attribute: String },
    PushConfig(String),
}

/// Clones share one record: the test keeps one, the host under test another.
#[derive(Clone, Default)]
pub struct FakeServices {
    calls: Arc<Mutex<Vec<ServiceCall>>>,
}

impl FakeServices {
    pub fn new() -> FakeServices {
        FakeServices::default()
    }

    pub fn calls(&self) -> Vec<ServiceCall> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: ServiceCall) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Services for FakeServices {
    fn order_guests_before_libvirt(&self, _deadline: &Deadline) {
        self.record(ServiceCall::OrderGuestsBeforeLibvirt);
    }

    fn set_utilization(&self, instance: &str, attribute: &str, value: &str, _deadline: &Deadline) -> Result<(), ExecError> {
        self.record(ServiceCall::SetUtilization { instance: instance.into(), attribute: attribute.into(), value: value.into() });
        Ok(())
    }

    fn delete_utilization(&self, instance: &str, attribute: &str, _deadline: &Deadline) -> Result<(), ExecError> {
        self.record(ServiceCall::DeleteUtilization { instance: instance.into(), attribute: attribute.into() });
        Ok(())
    }

    fn push_config(&self, path: &str, _deadline: &Deadline) -> Result<(), ExecError> {
        self.record(ServiceCall::PushConfig(path.into()));
        Ok(())
    }
}
