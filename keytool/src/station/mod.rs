//! The station's workflows, under the policy and its audit log: one library
//! for the command line (`commands`) and the TUI (`tui`), which only parse,
//! prompt, show and print.
//!
//! - [`session`]: the policy, its audit log (locked, anchored) and station key
//!   for one command, and how keys are checked on use;
//! - [`release`]: request, approve, evaluate and sign releases;
//! - [`error`]: the typed error every workflow returns;
//! - [`ceremony`]: quorum ceremonies, audited;
//! - [`certs`]: issue X.509 certificates with CA keys;
//! - [`keys`]: make keys where a key reference says;
//! - [`records`]: sign a batch of provisioning records.

pub(crate) mod ceremony;
pub(crate) mod certs;
pub(crate) mod error;
pub(crate) mod keys;
pub(crate) mod records;
pub(crate) mod release;
pub(crate) mod session;
