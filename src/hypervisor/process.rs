//! Finding and stopping a domain's emulator process through /proc, for
//! when libvirtd cannot be reached.
