//! The signing station's rules and records: the written release policy
//! ([`policy`]), release requests and officer approvals ([`request`]), the
//! evaluation of a release against both ([`evaluate`]), and the
//! tamper-evident audit log ([`audit`]) from which the last release of each
//! product is read ([`history`]).

pub mod audit;
pub mod evaluate;
pub mod history;
pub mod policy;
pub mod request;
