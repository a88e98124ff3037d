//! Inputs the fuzz targets once crashed on, replayed through the same decoders so the fixes stay
//! fixed without a fuzzing toolchain.

use bytes::{Bytes, BytesMut};
use ferrum_protocol::codec::decode_frame;
use ferrum_protocol::{RemotingCodec, RemotingCommand, body, headers, message};
use tokio_util::codec::Decoder;

/// What `fuzz/fuzz_targets/frame_decode.rs` does with each decoded command.
fn exercise(command: &RemotingCommand) {
    let _ = headers::decode_all(command.code, &command.ext_fields);
    let body = &command.body[..];
    let _ = message::MessageExt::decode(body);
    let _ = message::MessageView::decode(body, true);
    let _ = message::decode_all(body, false);
    let _ = message::decode_batch(body);
    let _ = body::from_json::<body::HeartbeatData>(body, "HeartbeatData");
    let _ = body::ConsumeStats::decode(body);
}

fn replay(data: &[u8]) {
    let mut codec = RemotingCodec::with_max_frame_length(1024 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(command)) = codec.decode(&mut buf) {
        exercise(&command);
    }
    if let Ok(command) = decode_frame(Bytes::copy_from_slice(data)) {
        exercise(&command);
    }
}

/// A record whose TOTALSIZE (0) is smaller than the fields already read (8 bytes) once made the
/// record reader subtract past zero.
#[test]
fn record_shorter_than_its_own_prefix() {
    #[rustfmt::skip]
    let data: &[u8] = &[
        0x01, 0x00, 0x00, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xda, 0xa3, 0x20, 0xa7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x36, 0x36, 0x36,
        0x36, 0x36, 0x36, 0x36, 0x36, 0x30, 0x30, 0x30, 0x30, 0x2e, 0x30, 0x30, 0x30, 0x30, 0x30,
        0x3e, 0x18, 0x00, 0x00, 0x00, 0x18, 0x18, 0x18, 0x18, 0x18, 0xff, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x8c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x36, 0x36,
        0x36, 0x36, 0x36, 0x36, 0x36, 0x36, 0x30, 0x30, 0x30, 0x30, 0x2e, 0x30, 0x30, 0x30, 0x30,
        0x30,
    ];
    replay(data);
    for total in 0u8..8 {
        let record = [0, 0, 0, total, 0xda, 0xa3, 0x20, 0xa7, 0, 0, 0, 0];
        assert!(message::MessageView::decode(&record, false).is_err());
        assert!(message::decode_all(&record, false).is_err());
    }
}
