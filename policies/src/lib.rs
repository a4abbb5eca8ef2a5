//! The signing station's rules and records: the tamper-evident audit log
//! ([`audit`]); the release policy with M-of-N approvals follows (issue 7).

pub mod audit;
