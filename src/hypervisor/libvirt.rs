//! The real backend: one libvirt connection per agent call.
