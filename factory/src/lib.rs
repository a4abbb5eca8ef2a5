//! The factory station: reads each chip's hardware ID through a debug probe,
//! has the chip make its own key (or injects one), asks the backend for its
//! serial, writes the signed provisioning record, verifies what was written,
//! locks the chip and only then activates it.
//!
//! The chip table ([`chips`]); the debug-connection seam ([`target::Target`])
//! with a GDB remote implementation ([`gdb`]), real probes through probe-rs
//! ([`probe`], feature `probe-rs`, on by default) and a fake chip for tests
//! ([`fake`]); the chip's own key, asked for through its key mailbox
//! ([`device_key`]); the flow ([`provision`]) with its firmware check
//! ([`image_check`]), partition image ([`partition`]) and backend client
//! ([`backend`]); and device authentication ([`device_auth`]).

pub mod backend;
pub mod chips;
pub mod device_auth;
pub mod device_key;
pub mod fake;
pub mod gdb;
pub mod image_check;
pub mod partition;
#[cfg(feature = "probe-rs")]
pub mod probe;
pub mod provision;
pub mod target;
