//! ferrum-store owns a broker's data on local disk, following RocketMQ's store design: the
//! CommitLog on fixed-size memory-mapped files, per-queue ConsumeQueues built by a dispatcher,
//! the message-key index, checkpoint and crash recovery, flush (async interval or synchronous
//! group commit) and retention. It also offers what replication and Raft mode need: append raw
//! replicated bytes at a given offset, truncate to an offset, and read committed data only.
//!
//! It has no network code and knows nothing of brokers' roles: callers decide what to append and
//! when a replica's bytes are committed.
