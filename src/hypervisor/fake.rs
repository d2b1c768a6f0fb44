//! An in-memory hypervisor for in-process tests of the decision logic.
