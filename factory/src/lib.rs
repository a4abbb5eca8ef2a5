//! The factory station: reads each chip's hardware ID through a debug probe,
//! asks the backend for its serial, injects the per-device key and the signed
//! provisioning record, verifies what was written and locks the chip.
//!
//! The chip table ([`chips`]); the debug-connection seam ([`target::Target`])
//! with a GDB remote implementation ([`gdb`]), real probes through probe-rs
//! ([`probe`], feature `probe-rs`, on by default) and a fake for tests; the
//! flow ([`provision`]) with its firmware check ([`image_check`]), partition
//! layout ([`partition`]) and backend client ([`backend`]); and the
//! end-of-line challenge-response ([`device_auth`]).

pub mod backend;
pub mod chips;
pub mod device_auth;
pub mod gdb;
pub mod image_check;
pub mod partition;
#[cfg(feature = "probe-rs")]
pub mod probe;
pub mod provision;
pub mod target;
