//! Property tests of the frame codec: arbitrary commands round-trip in both header
//! serializations, any chunking of the byte stream yields the same commands, and no input bytes
//! make the decoder panic.

use bytes::{BufMut, Bytes, BytesMut};
use ferrum_protocol::codec::decode_frame;
use ferrum_protocol::{
    ExtFields, FrameError, LanguageCode, RemotingCodec, RemotingCommand, SerializeType,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn language() -> impl Strategy<Value = LanguageCode> {
    proptest::sample::select(LanguageCode::ALL.to_vec())
}

fn ext_fields() -> impl Strategy<Value = ExtFields> {
    btree_map(".{0,12}", ".{0,40}", 0..8)
}

/// A command as the JSON header carries it: any values at all.
fn json_command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i32>(),
        proptest::option::of(language()),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(".{0,30}"),
        ext_fields(),
        vec(any::<u8>(), 0..256),
    )
        .prop_map(
            |(code, language, version, opaque, flag, remark, ext_fields, body)| RemotingCommand {
                code,
                language,
                version,
                opaque,
                flag,
                remark,
                ext_fields,
                body: Bytes::from(body),
                serialize_type: SerializeType::Json,
            },
        )
}

/// A command as the ROCKETMQ binary header carries it: code and version are 16-bit, the
/// language is always present and an empty remark reads back as none (RocketMQ's own layout).
fn binary_command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        language(),
        any::<i16>(),
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(".{1,30}"),
        ext_fields(),
        vec(any::<u8>(), 0..256),
    )
        .prop_map(
            |(code, language, version, opaque, flag, remark, ext_fields, body)| RemotingCommand {
                code: i32::from(code),
                language: Some(language),
                version: i32::from(version),
                opaque,
                flag,
                remark,
                ext_fields,
                body: Bytes::from(body),
                serialize_type: SerializeType::RocketMq,
            },
        )
}

fn any_command() -> impl Strategy<Value = RemotingCommand> {
    prop_oneof![json_command(), binary_command()]
}

fn encode_all(commands: &[RemotingCommand]) -> BytesMut {
    let mut codec = RemotingCodec::default();
    let mut buf = BytesMut::new();
    for command in commands {
        codec
            .encode(command, &mut buf)
            .expect("small frames encode");
    }
    buf
}

/// Feeds `stream` to the decoder in pieces cut at `cuts` and collects what comes out.
fn decode_in_chunks(stream: &[u8], cuts: &[usize]) -> Result<Vec<RemotingCommand>, FrameError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut codec = RemotingCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    for point in points {
        buf.extend_from_slice(&stream[start..point]);
        start = point;
        while let Some(command) = codec.decode(&mut buf)? {
            out.push(command);
        }
    }
    assert!(buf.is_empty(), "bytes left over after the last frame");
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn json_round_trip(command in json_command()) {
        let mut buf = encode_all(std::slice::from_ref(&command));
        let decoded = RemotingCodec::default().decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(command));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn binary_round_trip(command in binary_command()) {
        let mut buf = encode_all(std::slice::from_ref(&command));
        let decoded = RemotingCodec::default().decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(command));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_chunking_gives_the_same_commands(
        commands in vec(any_command(), 1..6),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let stream = encode_all(&commands);
        let decoded = decode_in_chunks(&stream, &cuts).unwrap();
        prop_assert_eq!(decoded, commands);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_commands(commands in vec(any_command(), 1..3)) {
        let stream = encode_all(&commands);
        let cuts: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(decode_in_chunks(&stream, &cuts).unwrap(), commands);
    }

    #[test]
    fn header_frame_plus_body_equals_whole_frame(command in any_command()) {
        let whole = encode_all(std::slice::from_ref(&command));
        let mut split = ferrum_protocol::codec::encode_header_frame(&command, command.body.len()).unwrap();
        split.extend_from_slice(&command.body);
        prop_assert_eq!(&split[..], &whole[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let mut codec = RemotingCodec::with_max_frame_length(64 * 1024);
        let mut buf = BytesMut::from(&bytes[..]);
        // Stop at the first error: the connection would be closed there.
        for _ in 0..64 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        let _ = decode_frame(Bytes::from(bytes));
    }

    /// Arbitrary header bytes behind a correct length prefix, so the header parsers themselves
    /// see the garbage rather than the length check.
    #[test]
    fn arbitrary_headers_never_panic(
        serialize in prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
        header in vec(any::<u8>(), 0..300),
        declared in proptest::option::of(0u32..400),
        body in vec(any::<u8>(), 0..32),
    ) {
        let header_length = declared.unwrap_or(header.len() as u32);
        let mut frame = BytesMut::new();
        frame.put_u32((4 + header.len() + body.len()) as u32);
        frame.put_u32((u32::from(serialize) << 24) | header_length);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&body);
        let _ = RemotingCodec::default().decode(&mut frame);
    }

    /// A binary header built field by field with hostile lengths.
    #[test]
    fn hostile_binary_lengths_are_errors(
        remark_length in any::<i32>(),
        ext_length in any::<i32>(),
        key_length in any::<i16>(),
        value_length in any::<i32>(),
        tail in vec(any::<u8>(), 0..16),
    ) {
        let mut header = BytesMut::new();
        header.put_i16(10);
        header.put_u8(0);
        header.put_i16(1);
        header.put_i32(1);
        header.put_i32(0);
        header.put_i32(remark_length);
        header.put_i32(ext_length);
        header.put_i16(key_length);
        header.put_i32(value_length);
        header.extend_from_slice(&tail);
        let mut frame = BytesMut::new();
        frame.put_u32(4 + header.len() as u32);
        frame.put_u32((1 << 24) | header.len() as u32);
        frame.extend_from_slice(&header);
        let _ = RemotingCodec::default().decode(&mut frame);
    }
}
