//! ferrum-protocol owns the RocketMQ remoting protocol as bytes and types: the frame codec with
//! both header serializations (JSON and ROCKETMQ binary), the request and response codes, typed
//! custom headers and their `extFields` form, message records (stored format v1/v2, batch bodies,
//! properties, message ids) and the route / cluster JSON bodies.
//!
//! It is pure: no sockets, no files, no clocks. Every decoder takes untrusted bytes and answers
//! with an error rather than a panic, and never allocates beyond the frame limit it is given.

pub mod body;
pub mod code;
pub mod codec;
pub mod command;
pub mod header;
pub mod headers;
pub mod message;
pub mod replica;
pub mod route;

pub use code::{LanguageCode, RequestCode, ResponseCode};
pub use codec::{FrameError, MAX_FRAME_LENGTH, RemotingCodec};
pub use command::{ExtFields, RemotingCommand, SerializeType};
pub use header::{CommandHeader, HeaderError};

/// The `version` Ferrum puts in its answers: the ordinal of RocketMQ `V5_3_3`. Java clients
/// record the broker's version from heartbeat answers and refuse SQL92 / non-TAG subscriptions
/// below `V4_1_0_SNAPSHOT`, so the value must look like a current RocketMQ release.
pub const CURRENT_VERSION: i32 = 479;
