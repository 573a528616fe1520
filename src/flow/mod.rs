//! The joins of a source and a sink, one per command family: what the
//! command-line layer calls. Each takes its clock and progress from the
//! caller.

pub mod backups;
pub mod check;
pub mod diff;
pub mod export;
pub mod follow;
pub mod preflight;
pub mod rebuild;
pub mod restore;
pub mod verify;
