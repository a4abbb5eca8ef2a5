//! The factory station: reads each chip's hardware ID through a debug probe,
//! asks the backend for its serial, injects the per-device key and the signed
//! provisioning record, verifies what was written and locks the chip.
//!
//! So far: the chip table ([`chips`]), the debug-connection seam
//! ([`target::Target`]) with a GDB remote implementation ([`gdb`]) and a fake
//! for tests, and reading the hardware ID. The provisioning flow, probe-rs
//! and station mode follow (issue 6).

pub mod backend;
pub mod chips;
pub mod device_auth;
pub mod gdb;
pub mod image_check;
pub mod partition;
pub mod provision;
pub mod target;
