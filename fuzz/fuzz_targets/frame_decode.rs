//! Feeds arbitrary bytes to the frame decoder as a connection would, then runs every typed
//! header decoder and every message-record decoder over what comes out. Any panic is a bug:
//! hostile peers must get an error, never a crash.

#![no_main]

use bytes::BytesMut;
use ferrum_protocol::codec::decode_frame;
use ferrum_protocol::{RemotingCodec, RemotingCommand, body, headers, message};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// A small frame limit keeps each run cheap while still covering the limit checks.
const FUZZ_FRAME_LIMIT: usize = 1024 * 1024;

fn exercise(command: &RemotingCommand) {
    let _ = headers::decode_all(command.code, &command.ext_fields);
    let body = &command.body[..];
    let _ = message::MessageExt::decode(body);
    let _ = message::MessageView::decode(body, true);
    let _ = message::decode_all(body, false);
    let _ = message::decode_batch(body);
    if let Some(properties) = command
        .ext_fields
        .get("properties")
        .or(command.ext_fields.get("i"))
    {
        let _ = message::string_to_properties(properties);
    }
    if let Some(id) = command.ext_fields.get("msgId") {
        let _ = message::parse_message_id(id);
    }
    let _ = body::from_json::<body::HeartbeatData>(body, "HeartbeatData");
    let _ = body::ConsumeStats::decode(body);
}

fuzz_target!(|data: &[u8]| {
    let mut codec = RemotingCodec::with_max_frame_length(FUZZ_FRAME_LIMIT);
    let mut buf = BytesMut::from(data);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(command)) => exercise(&command),
            // An error closes the connection; a partial frame waits for bytes that never come.
            Ok(None) | Err(_) => break,
        }
    }
    // The same bytes as one frame without its length prefix reach the header parsers directly.
    if let Ok(command) = decode_frame(bytes::Bytes::copy_from_slice(data)) {
        exercise(&command);
    }
});
