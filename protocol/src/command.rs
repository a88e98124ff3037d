//! `RemotingCommand`: one request or response as it crosses the wire.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::code::{LanguageCode, ResponseCode};
use crate::header::{CommandHeader, HeaderError};

/// The custom header: every value is a string on the wire (`makeCustomHeaderToNet`).
pub type ExtFields = BTreeMap<String, String>;

/// Header serialization, the high byte of the second length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// fastjson-compatible JSON (type 0), the default of every RocketMQ client.
    #[default]
    Json,
    /// RocketMQ's binary layout (type 1).
    RocketMq,
}

impl SerializeType {
    /// The byte that marks this serialization on the wire.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    /// The serialization for a wire byte, `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }
}

const FLAG_RESPONSE: i32 = 1;
const FLAG_ONEWAY: i32 = 1 << 1;

/// A request or a response. `code` stays a raw integer because peers send codes we may not know.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: Option<LanguageCode>,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    /// How the header was (or will be) serialized. Answers use the request's.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request with `code` and the given typed header.
    pub fn request(code: impl Into<i32>, header: &impl CommandHeader) -> Self {
        let mut ext_fields = ExtFields::new();
        header.encode(&mut ext_fields);
        RemotingCommand {
            code: code.into(),
            language: Some(LanguageCode::RUST),
            version: crate::CURRENT_VERSION,
            ext_fields,
            ..Default::default()
        }
    }

    /// A request without a custom header.
    pub fn bare_request(code: impl Into<i32>) -> Self {
        RemotingCommand {
            code: code.into(),
            language: Some(LanguageCode::RUST),
            version: crate::CURRENT_VERSION,
            ..Default::default()
        }
    }

    /// The answer to `self`: same opaque, same serialization, the response flag set.
    ///
    /// The language is JAVA because RocketMQ 4.x clients' `LanguageCode` has no RUST and their
    /// JSON reader would not map the name; no client acts on the server's language.
    pub fn response_to(&self, code: impl Into<i32>, remark: impl Into<Option<String>>) -> Self {
        RemotingCommand {
            code: code.into(),
            language: Some(LanguageCode::JAVA),
            version: crate::CURRENT_VERSION,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            remark: remark.into(),
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: self.serialize_type,
        }
    }

    /// A SUCCESS answer to `self`.
    pub fn success_to(&self) -> Self {
        self.response_to(ResponseCode::SUCCESS, None)
    }

    /// An error answer to `self` with a remark that says what went wrong.
    pub fn error_to(&self, code: ResponseCode, remark: impl Into<String>) -> Self {
        self.response_to(code, Some(remark.into()))
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_header(mut self, header: &impl CommandHeader) -> Self {
        header.encode(&mut self.ext_fields);
        self
    }

    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> Self {
        self.serialize_type = serialize_type;
        self
    }

    /// Marks the request oneway: the peer must not answer it.
    pub fn into_oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The custom header decoded into its typed form.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::decode(&self.ext_fields)
    }

    /// The response code as a known enum value, if it is one.
    pub fn response_code(&self) -> Option<ResponseCode> {
        ResponseCode::from_code(self.code)
    }
}
