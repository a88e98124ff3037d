//! Pure parts of the Raft chaos drills (broker/tests/raft_chaos.rs): seeded fault schedules and
//! the safety checker. No processes, sockets or files here, so both are unit-tested.

pub mod checker;
pub mod schedule;
