//! The remoting frame codec.
//!
//! ```text
//! length: i32 | serializeType: u8 | headerLength: u24 | header | body
//! length = 4 + headerLength + bodyLength
//! ```
//! All integers are big-endian. The decoder refuses a frame longer than its limit before
//! buffering it, so a hostile length prefix cannot make it allocate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

use crate::code::LanguageCode;
use crate::command::{ExtFields, RemotingCommand, SerializeType};

/// RocketMQ's default `com.rocketmq.remoting.frameMaxLength`: 16 MiB.
pub const MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// The most the decoder reserves ahead of bytes it has not received yet.
const RESERVE_AHEAD: usize = 64 * 1024;

/// Why bytes could not be read as a frame. Any of these ends the connection, as RocketMQ does.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} exceeds the limit of {limit} bytes")]
    TooLong { length: usize, limit: usize },
    #[error("frame length {0} is too short to hold the header length word")]
    TooShort(i64),
    #[error("header length {header} exceeds the frame's {available} remaining bytes")]
    HeaderOverrun { header: usize, available: usize },
    #[error("unknown header serialization type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    Json(String),
    #[error("malformed ROCKETMQ binary header: {0}")]
    Binary(&'static str),
    /// A value does not fit the width of its length or number field; writing it would put a
    /// wrong length on the wire and desynchronise the peer's reader.
    #[error("cannot encode the header: {0}")]
    Unencodable(String),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

/// Frame codec for tokio-util's `Framed`.
#[derive(Debug, Clone)]
pub struct RemotingCodec {
    max_frame_length: usize,
}

impl Default for RemotingCodec {
    fn default() -> Self {
        RemotingCodec {
            max_frame_length: MAX_FRAME_LENGTH,
        }
    }
}

impl RemotingCodec {
    pub fn with_max_frame_length(max_frame_length: usize) -> Self {
        RemotingCodec { max_frame_length }
    }
}

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if length < 4 {
            return Err(FrameError::TooShort(i64::from(length)));
        }
        let length = length as usize;
        if length > self.max_frame_length {
            return Err(FrameError::TooLong {
                length,
                limit: self.max_frame_length,
            });
        }
        if src.len() < 4 + length {
            // Grow with the bytes that actually arrive: reserving the whole announced length
            // would let a peer pin the frame limit in memory per connection with four bytes.
            src.reserve((4 + length - src.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(length).freeze();
        decode_frame(frame).map(Some)
    }
}

/// Decodes one frame without its length prefix: `serializeType|headerLength`, header, body.
pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::TooShort(frame.len() as i64));
    }
    let mark = frame.get_u32();
    let serialize_byte = (mark >> 24) as u8;
    let header_length = (mark & 0x00FF_FFFF) as usize;
    if header_length > frame.len() {
        return Err(FrameError::HeaderOverrun {
            header: header_length,
            available: frame.len(),
        });
    }
    let serialize_type = SerializeType::from_code(serialize_byte)
        .ok_or(FrameError::UnknownSerializeType(serialize_byte))?;
    let header = frame.split_to(header_length);
    let mut command = match serialize_type {
        SerializeType::Json => decode_json_header(&header)?,
        SerializeType::RocketMq => decode_binary_header(header)?,
    };
    command.serialize_type = serialize_type;
    command.body = frame;
    Ok(command)
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = FrameError;

    fn encode(&mut self, command: RemotingCommand, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(&command, dst, self.max_frame_length)
    }
}

impl Encoder<&RemotingCommand> for RemotingCodec {
    type Error = FrameError;

    fn encode(&mut self, command: &RemotingCommand, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(command, dst, self.max_frame_length)
    }
}

/// Encodes the length prefix and header of `command`, leaving the body to the caller. A server
/// writes a pull answer's body straight from the mapped commit log after these bytes.
pub fn encode_header_frame(
    command: &RemotingCommand,
    body_length: usize,
) -> Result<BytesMut, FrameError> {
    let header = encode_header(command)?;
    let mut dst = BytesMut::with_capacity(8 + header.len());
    // The peer enforces its own frame limit; here only the i32 length field bounds the frame.
    put_prefix(
        &mut dst,
        command,
        header.len(),
        body_length,
        i32::MAX as usize,
    )?;
    dst.extend_from_slice(&header);
    Ok(dst)
}

/// The largest header the 24-bit header length field can describe.
pub const MAX_HEADER_LENGTH: usize = 0x00FF_FFFF;

/// Writes the frame length and the `serializeType|headerLength` mark, refusing lengths their
/// fields cannot hold.
fn put_prefix(
    dst: &mut BytesMut,
    command: &RemotingCommand,
    header_length: usize,
    body_length: usize,
    limit: usize,
) -> Result<(), FrameError> {
    if header_length > MAX_HEADER_LENGTH {
        return Err(FrameError::Unencodable(format!(
            "a header of {header_length} bytes exceeds the 24-bit header length field"
        )));
    }
    let length = (4 + header_length).saturating_add(body_length);
    if length > limit {
        return Err(FrameError::TooLong { length, limit });
    }
    let wire_length = i32::try_from(length).map_err(|_| FrameError::TooLong {
        length,
        limit: i32::MAX as usize,
    })?;
    dst.reserve(8);
    dst.put_i32(wire_length);
    // header_length fits 24 bits, checked above.
    dst.put_u32((u32::from(command.serialize_type.code()) << 24) | header_length as u32);
    Ok(())
}

fn encode_into(
    command: &RemotingCommand,
    dst: &mut BytesMut,
    limit: usize,
) -> Result<(), FrameError> {
    let header = encode_header(command)?;
    put_prefix(dst, command, header.len(), command.body.len(), limit)?;
    dst.reserve(header.len() + command.body.len());
    dst.extend_from_slice(&header);
    dst.extend_from_slice(&command.body);
    Ok(())
}

/// The header bytes of `command` in its own serialization.
pub fn encode_header(command: &RemotingCommand) -> Result<Vec<u8>, FrameError> {
    match command.serialize_type {
        SerializeType::Json => Ok(encode_json_header(command)),
        SerializeType::RocketMq => encode_binary_header(command),
    }
}

fn encode_json_header(command: &RemotingCommand) -> Vec<u8> {
    let mut header = Map::new();
    header.insert("code".into(), Value::from(command.code));
    if let Some(language) = command.language {
        header.insert("language".into(), Value::from(language.name()));
    }
    header.insert("version".into(), Value::from(command.version));
    header.insert("opaque".into(), Value::from(command.opaque));
    header.insert("flag".into(), Value::from(command.flag));
    if let Some(remark) = &command.remark {
        header.insert("remark".into(), Value::from(remark.as_str()));
    }
    let ext: Map<String, Value> = command
        .ext_fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    header.insert("extFields".into(), Value::Object(ext));
    header.insert("serializeTypeCurrentRPC".into(), Value::from("JSON"));
    // Serializing a map of strings and numbers cannot fail.
    serde_json::to_vec(&Value::Object(header)).unwrap_or_default()
}

fn decode_json_header(bytes: &[u8]) -> Result<RemotingCommand, FrameError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| FrameError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(FrameError::Json("the header is not a JSON object".into()));
    };
    let int = |name: &str| -> Result<i32, FrameError> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| FrameError::Json(format!("'{name}' is not a 32-bit integer"))),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| FrameError::Json(format!("'{name}' is not a 32-bit integer"))),
            Some(_) => Err(FrameError::Json(format!("'{name}' is not a number"))),
        }
    };
    let code = match map.get("code") {
        None | Some(Value::Null) => {
            return Err(FrameError::Json("the header has no 'code'".into()));
        }
        Some(_) => int("code")?,
    };
    let language = match map.get("language") {
        Some(Value::String(name)) => Some(LanguageCode::from_name(name)),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .map(|v| LanguageCode::from_code(v).unwrap_or(LanguageCode::OTHER)),
        _ => None,
    };
    let remark = match map.get("remark") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    };
    let mut ext_fields = ExtFields::new();
    match map.get("extFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            for (key, value) in ext {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                ext_fields.insert(key.clone(), value);
            }
        }
        Some(_) => return Err(FrameError::Json("'extFields' is not an object".into())),
    }
    Ok(RemotingCommand {
        code,
        language,
        version: int("version")?,
        opaque: int("opaque")?,
        flag: int("flag")?,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

/// `what` does not fit the `width` of its binary-header field.
fn unencodable(what: &str, value: impl std::fmt::Display, width: &str) -> FrameError {
    FrameError::Unencodable(format!(
        "{what} {value} does not fit the ROCKETMQ binary header's {width} field"
    ))
}

fn encode_binary_header(command: &RemotingCommand) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(64);
    // RocketMQ writes code and version with writeShort; Java would truncate a wider value.
    let code = i16::try_from(command.code).map_err(|_| unencodable("code", command.code, "i16"))?;
    let language = command.language.unwrap_or(LanguageCode::JAVA).code();
    let language = u8::try_from(language).map_err(|_| unencodable("language", language, "u8"))?;
    let version = i16::try_from(command.version)
        .map_err(|_| unencodable("version", command.version, "i16"))?;
    out.put_i16(code);
    out.put_u8(language);
    out.put_i16(version);
    out.put_i32(command.opaque);
    out.put_i32(command.flag);
    let remark = command.remark.as_deref().unwrap_or("");
    put_i32_len(&mut out, remark.len(), "remark length")?;
    out.extend_from_slice(remark.as_bytes());
    let mut ext = Vec::new();
    for (key, value) in &command.ext_fields {
        let key_length = i16::try_from(key.len())
            .map_err(|_| unencodable("extFields key length", key.len(), "i16"))?;
        ext.put_i16(key_length);
        ext.extend_from_slice(key.as_bytes());
        put_i32_len(&mut ext, value.len(), "extFields value length")?;
        ext.extend_from_slice(value.as_bytes());
    }
    put_i32_len(&mut out, ext.len(), "extFields length")?;
    out.extend_from_slice(&ext);
    Ok(out)
}

fn put_i32_len(out: &mut Vec<u8>, length: usize, what: &str) -> Result<(), FrameError> {
    let length = i32::try_from(length).map_err(|_| unencodable(what, length, "i32"))?;
    out.put_i32(length);
    Ok(())
}

fn decode_binary_header(mut header: Bytes) -> Result<RemotingCommand, FrameError> {
    const FIXED: usize = 2 + 1 + 2 + 4 + 4 + 4;
    if header.remaining() < FIXED {
        return Err(FrameError::Binary("header shorter than its fixed part"));
    }
    let code = i32::from(header.get_i16());
    let language =
        LanguageCode::from_code(i32::from(header.get_u8())).unwrap_or(LanguageCode::OTHER);
    let version = i32::from(header.get_i16());
    let opaque = header.get_i32();
    let flag = header.get_i32();
    let remark_length = header.get_i32();
    let remark = if remark_length > 0 {
        Some(take_string(
            &mut header,
            remark_length as usize,
            "remark overruns the header",
        )?)
    } else {
        None
    };
    if header.remaining() < 4 {
        return Err(FrameError::Binary(
            "header ends before the extFields length",
        ));
    }
    let ext_length = header.get_i32();
    if ext_length < 0 || ext_length as usize > header.remaining() {
        return Err(FrameError::Binary("extFields length overruns the header"));
    }
    let mut ext = header.split_to(ext_length as usize);
    let mut ext_fields = ExtFields::new();
    while ext.has_remaining() {
        if ext.remaining() < 2 {
            return Err(FrameError::Binary("truncated extFields key length"));
        }
        let key_length = ext.get_i16();
        if key_length < 0 {
            return Err(FrameError::Binary("negative extFields key length"));
        }
        let key = take_string(
            &mut ext,
            key_length as usize,
            "extFields key overruns the header",
        )?;
        if ext.remaining() < 4 {
            return Err(FrameError::Binary("truncated extFields value length"));
        }
        let value_length = ext.get_i32();
        if value_length < 0 {
            return Err(FrameError::Binary("negative extFields value length"));
        }
        let value = take_string(
            &mut ext,
            value_length as usize,
            "extFields value overruns the header",
        )?;
        ext_fields.insert(key, value);
    }
    Ok(RemotingCommand {
        code,
        language: Some(language),
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

fn take_string(
    buf: &mut Bytes,
    length: usize,
    overrun: &'static str,
) -> Result<String, FrameError> {
    if length > buf.remaining() {
        return Err(FrameError::Binary(overrun));
    }
    let raw = buf.split_to(length);
    String::from_utf8(raw.to_vec()).map_err(|_| FrameError::Binary("a string is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::RequestCode;

    fn round_trip(command: RemotingCommand) -> RemotingCommand {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(&command, &mut buf).unwrap();
        let decoded = codec.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        decoded
    }

    fn sample(serialize_type: SerializeType) -> RemotingCommand {
        let mut ext = ExtFields::new();
        ext.insert("topic".into(), "TopicTest".into());
        ext.insert("queueId".into(), "3".into());
        RemotingCommand {
            code: RequestCode::PULL_MESSAGE.code(),
            language: Some(LanguageCode::JAVA),
            version: 401,
            opaque: 42,
            flag: 0,
            remark: Some("héllo".into()),
            ext_fields: ext,
            body: Bytes::from_static(b"body bytes"),
            serialize_type,
        }
    }

    #[test]
    fn json_and_binary_round_trip() {
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let command = sample(st);
            assert_eq!(round_trip(command.clone()), command);
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut codec = RemotingCodec::default();
        let mut full = BytesMut::new();
        codec
            .encode(sample(SerializeType::Json), &mut full)
            .unwrap();
        let mut partial = BytesMut::from(&full[..full.len() - 1]);
        assert!(codec.decode(&mut partial).unwrap().is_none());
        partial.extend_from_slice(&full[full.len() - 1..]);
        assert!(codec.decode(&mut partial).unwrap().is_some());
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLong { .. })
        ));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn announced_length_is_not_reserved_before_it_arrives() {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        buf.put_u32((MAX_FRAME_LENGTH - 1) as u32);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 4 + RESERVE_AHEAD, "{}", buf.capacity());
    }

    #[test]
    fn header_length_beyond_frame_is_refused() {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        buf.put_u32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::HeaderOverrun { .. })
        ));
    }

    /// The exact bytes of a small JSON request, worked out by hand from the layout in the
    /// reference: length, mark (type 0, header length), header JSON, body.
    #[test]
    fn json_frame_bytes() {
        let command = RemotingCommand {
            code: 105,
            language: Some(LanguageCode::JAVA),
            version: 401,
            opaque: 7,
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        RemotingCodec::default().encode(&command, &mut buf).unwrap();
        let header = br#"{"code":105,"extFields":{},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":401}"#;
        let mut expected = Vec::new();
        expected.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
        expected.extend_from_slice(&(header.len() as u32).to_be_bytes());
        expected.extend_from_slice(header);
        assert_eq!(&buf[..], &expected[..]);
    }

    /// A ROCKETMQ binary request laid out by hand: 21 fixed bytes, then the ext map.
    #[test]
    fn binary_frame_bytes() {
        let mut ext = ExtFields::new();
        ext.insert("k".into(), "vv".into());
        let command = RemotingCommand {
            code: 105,
            language: Some(LanguageCode::GO),
            version: 317,
            opaque: 1,
            flag: 2,
            ext_fields: ext,
            serialize_type: SerializeType::RocketMq,
            ..Default::default()
        };
        let header: Vec<u8> = vec![
            0, 105, // code
            9,   // language GO
            0x01, 0x3d, // version 317
            0, 0, 0, 1, // opaque
            0, 0, 0, 2, // flag (oneway)
            0, 0, 0, 0, // remark length
            0, 0, 0, 9, // ext length = 2 + 1 + 4 + 2
            0, 1, b'k', 0, 0, 0, 2, b'v', b'v',
        ];
        let mut expected = Vec::new();
        expected.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
        expected.extend_from_slice(&((1u32 << 24) | header.len() as u32).to_be_bytes());
        expected.extend_from_slice(&header);
        let mut buf = BytesMut::new();
        RemotingCodec::default().encode(&command, &mut buf).unwrap();
        assert_eq!(&buf[..], &expected[..]);
        let decoded = RemotingCodec::default()
            .decode(&mut BytesMut::from(&expected[..]))
            .unwrap()
            .unwrap();
        assert!(decoded.is_oneway());
        assert_eq!(decoded.ext_fields.get("k").map(String::as_str), Some("vv"));
    }

    #[test]
    fn binary_values_wider_than_their_fields_are_refused() {
        let mut codec = RemotingCodec::default();
        let encode = |command: RemotingCommand| {
            let mut buf = BytesMut::new();
            let result = RemotingCodec::default().encode(command, &mut buf);
            (result, buf)
        };
        let base = sample(SerializeType::RocketMq);

        let mut long_key = base.clone();
        long_key
            .ext_fields
            .insert("k".repeat(usize::from(u16::MAX)), "v".into());
        let (result, buf) = encode(long_key.clone());
        assert!(
            matches!(&result, Err(FrameError::Unencodable(why)) if why.contains("key length")),
            "{result:?}"
        );
        assert!(buf.is_empty(), "nothing is written for a refused command");

        for (code, version) in [(40_000, 1), (-40_000, 1), (105, 70_000)] {
            let wide = RemotingCommand {
                code,
                version,
                ..base.clone()
            };
            let (result, _) = encode(wide);
            assert!(
                matches!(result, Err(FrameError::Unencodable(_))),
                "{result:?}"
            );
        }

        // The same long key is fine in JSON, which has no per-field length.
        long_key.serialize_type = SerializeType::Json;
        let mut buf = BytesMut::new();
        codec.encode(&long_key, &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), long_key);
    }

    #[test]
    fn headers_beyond_the_24_bit_length_field_are_refused() {
        let command = RemotingCommand {
            remark: Some("r".repeat(MAX_HEADER_LENGTH + 1)),
            ..Default::default()
        };
        let mut codec = RemotingCodec::with_max_frame_length(64 * 1024 * 1024);
        let mut buf = BytesMut::new();
        let result = codec.encode(&command, &mut buf);
        assert!(
            matches!(&result, Err(FrameError::Unencodable(why)) if why.contains("24-bit")),
            "{result:?}"
        );
        assert!(buf.is_empty());
        let result = encode_header_frame(&command, 0);
        assert!(
            matches!(result, Err(FrameError::Unencodable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn header_frame_refuses_a_body_beyond_the_i32_length_field() {
        let command = sample(SerializeType::Json);
        let result = encode_header_frame(&command, i32::MAX as usize);
        assert!(
            matches!(result, Err(FrameError::TooLong { .. })),
            "{result:?}"
        );
        let fits = encode_header_frame(&command, 1 << 30).unwrap();
        let length = i32::from_be_bytes([fits[0], fits[1], fits[2], fits[3]]);
        assert_eq!(length as usize, 4 + (fits.len() - 8) + (1 << 30));
    }

    #[test]
    fn go_style_json_header_is_read() {
        let header = br#"{"code":105,"language":"GO","version":317,"opaque":3,"flag":0,"remark":"","extFields":{"topic":"T"}}"#;
        let mut buf = BytesMut::new();
        buf.put_u32(4 + header.len() as u32);
        buf.put_u32(header.len() as u32);
        buf.extend_from_slice(header);
        let command = RemotingCodec::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(command.language, Some(LanguageCode::GO));
        assert_eq!(
            command.ext_fields.get("topic").map(String::as_str),
            Some("T")
        );
    }
}
