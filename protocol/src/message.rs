//! Message records as RocketMQ stores them in the CommitLog and sends them in pull bodies.
//!
//! Encoding always produces format v1 (1-byte topic length): Go clients ignore the magic code
//! and read a 1-byte topic length, so v1 is the only format every client reads. Decoding accepts
//! v1 and v2. All decoders take untrusted bytes and check every length before reading.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

/// Magic code of a v1 record (1-byte topic length).
pub const MAGIC_CODE_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of a v2 record (2-byte topic length).
pub const MAGIC_CODE_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Magic code of the BLANK record padding the end of a CommitLog file.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD4_3194_u32 as i32;
/// A BLANK record always has room for TOTALSIZE and MAGICCODE.
pub const END_FILE_MIN_BLANK_LENGTH: usize = 8;
/// Properties are length-prefixed by a signed 16-bit length.
pub const MAX_PROPERTIES_LENGTH: usize = i16::MAX as usize;
/// Topics longer than this need v2, which Ferrum never writes.
pub const MAX_TOPIC_LENGTH_V1: usize = 127;

/// Name / value separator of the properties string (char 1).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Separator between properties (char 2).
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// `MessageSysFlag` bits.
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
    pub const NEED_UNWRAP: i32 = 0x40;
    pub const INNER_BATCH: i32 = 0x80;
    /// 5.x: the compression algorithm of a COMPRESSED body, bits 8-10 (0 from 4.x also means
    /// zlib).
    pub const COMPRESSION_LZ4_TYPE: i32 = 0x1 << 8;
    pub const COMPRESSION_ZSTD_TYPE: i32 = 0x2 << 8;
    pub const COMPRESSION_ZLIB_TYPE: i32 = 0x3 << 8;
    pub const COMPRESSION_TYPE_COMPARATOR: i32 = 0x7 << 8;

    /// The transaction type bits of a sysflag.
    pub fn transaction_value(flag: i32) -> i32 {
        flag & TRANSACTION_ROLLBACK_TYPE
    }
}

/// Well-known property keys (`MessageConst`).
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT_STORE_MSG_OK: &str = "WAIT";
    pub const DELAY_TIME_LEVEL: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QUEUE_ID: &str = "REAL_QID";
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    pub const PRODUCER_GROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIMESTAMP: &str = "CONSUME_START_TIME";
    pub const CLUSTER: &str = "CLUSTER";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    pub const INNER_NUM: &str = "INNER_NUM";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_SWITCH: &str = "TRACE_ON";
    /// `KEYS` holds several keys separated by this.
    pub const KEY_SEPARATOR: &str = " ";
}

/// Why a record, batch, properties string or message id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message record truncated: {field} needs {need} bytes, {have} remain")]
    Truncated {
        field: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unknown message magic code {0:#010x}")]
    BadMagic(u32),
    #[error("message TOTALSIZE {total} disagrees with its fields, which need {computed} bytes")]
    SizeMismatch { total: i64, computed: usize },
    #[error("negative {0} length")]
    NegativeLength(&'static str),
    #[error("body CRC {stored:#x} does not match the body's CRC {computed:#x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("properties are {0} bytes, the limit is 32767")]
    PropertiesTooLong(usize),
    #[error("topic is {0} bytes, a v1 record holds at most 127")]
    TopicTooLong(usize),
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("invalid offset message id '{0}'")]
    BadMessageId(String),
    #[error("a message of {0} bytes does not fit the i32 TOTALSIZE field")]
    TooLarge(usize),
    #[error("compressed body: {0}")]
    Compressed(String),
}

/// Largest body [`uncompressed_body`] inflates to, so a small hostile body cannot make a reader
/// allocate without bound.
pub const MAX_INFLATED_BODY: usize = 4 * crate::MAX_FRAME_LENGTH;

/// The body as the producer wrote it: a body stored with the COMPRESSED sysflag (Java producers
/// compress bodies over 4 KiB) is inflated; zlib is the only algorithm read here, LZ4 and zstd
/// bodies are refused by name rather than handed out compressed.
pub fn uncompressed_body(sys: i32, body: &[u8]) -> Result<Cow<'_, [u8]>, MessageError> {
    use std::io::Read;
    if sys & sys_flag::COMPRESSED == 0 {
        return Ok(Cow::Borrowed(body));
    }
    match sys & sys_flag::COMPRESSION_TYPE_COMPARATOR {
        0 | sys_flag::COMPRESSION_ZLIB_TYPE => {}
        sys_flag::COMPRESSION_LZ4_TYPE => {
            return Err(MessageError::Compressed("LZ4 is not supported".into()));
        }
        sys_flag::COMPRESSION_ZSTD_TYPE => {
            return Err(MessageError::Compressed("zstd is not supported".into()));
        }
        other => {
            return Err(MessageError::Compressed(format!(
                "unknown compression type {}",
                other >> 8
            )));
        }
    }
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(MAX_INFLATED_BODY as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| MessageError::Compressed(format!("not a zlib stream: {e}")))?;
    if plain.len() > MAX_INFLATED_BODY {
        return Err(MessageError::Compressed(format!(
            "inflates beyond {MAX_INFLATED_BODY} bytes"
        )));
    }
    Ok(Cow::Owned(plain))
}

/// `size` as the i32 TOTALSIZE / BODYLEN fields carry it, refused rather than wrapped.
fn size_field(size: usize) -> Result<i32, MessageError> {
    i32::try_from(size).map_err(|_| MessageError::TooLarge(size))
}

/// The body CRC RocketMQ stores: `CRC32(body) & 0x7FFFFFFF`.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Java's `String.hashCode` over UTF-16 code units with wrapping arithmetic; consume queues store
/// it as the tag code so tag filtering agrees with Java brokers and clients.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Tag code stored in a consume queue for a tag (`MessageExtBrokerInner.tagsString2tagsCode`).
pub fn tags_code(tags: &str) -> i64 {
    i64::from(java_string_hash(tags))
}

/// Encodes properties as `name \u0001 value \u0002` repeated.
pub fn properties_to_string(props: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Parses a properties string; entries without a separator are skipped as Java does.
pub fn string_to_properties(s: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for item in s.split(PROPERTY_SEPARATOR) {
        if let Some((k, v)) = item.split_once(NAME_VALUE_SEPARATOR) {
            map.insert(k.to_owned(), v.to_owned());
        }
    }
    map
}

fn host_len(v6: bool) -> usize {
    if v6 { 20 } else { 8 }
}

fn put_host(buf: &mut BytesMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => buf.put_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.put_slice(&ip.octets()),
    }
    buf.put_i32(i32::from(addr.port()));
}

/// The stored size of a v1 record with these variable parts.
pub fn stored_size(
    body_len: usize,
    topic_len: usize,
    props_len: usize,
    born_v6: bool,
    store_v6: bool,
) -> usize {
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(born_v6)
        + 8
        + host_len(store_v6)
        + 4
        + 8
        + 4
        + body_len
        + 1
        + topic_len
        + 2
        + props_len
}

/// An owned message as stored (`MessageExt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
}

impl Default for MessageExt {
    fn default() -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        Self {
            topic: String::new(),
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: any,
            store_timestamp: 0,
            store_host: any,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::new(),
            properties: BTreeMap::new(),
        }
    }
}

impl MessageExt {
    /// The sysflag as written: the host-kind bits follow the addresses actually held.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= sys_flag::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= sys_flag::STOREHOST_V6;
        }
        f
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.get(property::TAGS).map(String::as_str)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(property::KEYS)
            .map(String::as_str)
            .unwrap_or("")
            .split(property::KEY_SEPARATOR)
            .filter(|k| !k.is_empty())
    }

    /// The offset message id of this stored message.
    pub fn msg_id(&self) -> String {
        create_message_id(self.store_host, self.commit_log_offset)
    }

    /// Encodes this message as a v1 record.
    pub fn encode(&self) -> Result<Bytes, MessageError> {
        let props = properties_to_string(&self.properties);
        let mut buf = BytesMut::new();
        encode_record(
            &mut buf,
            &RecordParts {
                topic: &self.topic,
                queue_id: self.queue_id,
                flag: self.flag,
                queue_offset: self.queue_offset,
                commit_log_offset: self.commit_log_offset,
                sys_flag: self.sys_flag,
                born_timestamp: self.born_timestamp,
                born_host: self.born_host,
                store_timestamp: self.store_timestamp,
                store_host: self.store_host,
                reconsume_times: self.reconsume_times,
                prepared_transaction_offset: self.prepared_transaction_offset,
                body: &self.body,
                properties: props.as_bytes(),
            },
        )?;
        Ok(buf.freeze())
    }

    /// Decodes one record at the start of `buf`, checking the body CRC.
    pub fn decode(buf: &[u8]) -> Result<(MessageExt, usize), MessageError> {
        let (view, n) = MessageView::decode(buf, true)?;
        Ok((view.to_owned()?, n))
    }
}

/// The fields of a record to encode, borrowed so the store can write without extra copies.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// The already-encoded properties string.
    pub properties: &'a [u8],
}

impl RecordParts<'_> {
    pub fn stored_size(&self) -> usize {
        stored_size(
            self.body.len(),
            self.topic.len(),
            self.properties.len(),
            self.born_host.is_ipv6(),
            self.store_host.is_ipv6(),
        )
    }
}

/// Appends a v1 record to `buf`; returns its size.
pub fn encode_record(buf: &mut BytesMut, p: &RecordParts<'_>) -> Result<usize, MessageError> {
    if p.topic.len() > MAX_TOPIC_LENGTH_V1 {
        return Err(MessageError::TopicTooLong(p.topic.len()));
    }
    if p.properties.len() > MAX_PROPERTIES_LENGTH {
        return Err(MessageError::PropertiesTooLong(p.properties.len()));
    }
    let size = p.stored_size();
    // The body is part of the record, so a size that fits covers BODYLEN too.
    let size_word = size_field(size)?;
    let mut sys = p.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
    if p.born_host.is_ipv6() {
        sys |= sys_flag::BORNHOST_V6;
    }
    if p.store_host.is_ipv6() {
        sys |= sys_flag::STOREHOST_V6;
    }
    buf.reserve(size);
    buf.put_i32(size_word);
    buf.put_i32(MAGIC_CODE_V1);
    buf.put_i32(body_crc(p.body));
    buf.put_i32(p.queue_id);
    buf.put_i32(p.flag);
    buf.put_i64(p.queue_offset);
    buf.put_i64(p.commit_log_offset);
    buf.put_i32(sys);
    buf.put_i64(p.born_timestamp);
    put_host(buf, &p.born_host);
    buf.put_i64(p.store_timestamp);
    put_host(buf, &p.store_host);
    buf.put_i32(p.reconsume_times);
    buf.put_i64(p.prepared_transaction_offset);
    buf.put_i32(size_field(p.body.len())?);
    buf.put_slice(p.body);
    // Checked against MAX_TOPIC_LENGTH_V1 above.
    buf.put_u8(p.topic.len() as u8);
    buf.put_slice(p.topic.as_bytes());
    buf.put_i16(p.properties.len() as i16);
    buf.put_slice(p.properties);
    Ok(size)
}

/// A bounds-checked big-endian reader over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        let have = self.buf.len() - self.pos;
        if n > have {
            return Err(MessageError::Truncated {
                field,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, MessageError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }
    fn i16(&mut self, field: &'static str) -> Result<i16, MessageError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn len(&mut self, v: i64, field: &'static str) -> Result<usize, MessageError> {
        usize::try_from(v).map_err(|_| MessageError::NegativeLength(field))
    }
    fn host(&mut self, v6: bool, field: &'static str) -> Result<SocketAddr, MessageError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?))
        };
        let port = self.i32(field)?;
        // Ports travel as an int; anything out of range is kept modulo 2^16 rather than refused,
        // as Java's InetSocketAddress would refuse it only when a client builds one.
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// A zero-copy view of one stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub total_size: usize,
    pub magic_code: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a str,
    pub properties: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Decodes one record at the start of `buf`; returns it with its size. With `check_crc`
    /// the body CRC is verified. TOTALSIZE must equal the size the fields add up to.
    pub fn decode(buf: &'a [u8], check_crc: bool) -> Result<(Self, usize), MessageError> {
        let mut r = Reader { buf, pos: 0 };
        let total = r.i32("TOTALSIZE")?;
        let magic = r.i32("MAGICCODE")?;
        let v2 = match magic {
            MAGIC_CODE_V1 => false,
            MAGIC_CODE_V2 => true,
            other => return Err(MessageError::BadMagic(other as u32)),
        };
        let total_size = r.len(i64::from(total), "TOTALSIZE")?;
        if total_size > buf.len() {
            return Err(MessageError::Truncated {
                field: "record",
                need: total_size,
                have: buf.len(),
            });
        }
        if total_size < r.pos {
            return Err(MessageError::SizeMismatch {
                total: i64::from(total),
                computed: r.pos,
            });
        }
        // Confine the remaining reads to this record.
        r.buf = &buf[..total_size];
        let body_crc_v = r.i32("BODYCRC")?;
        let queue_id = r.i32("QUEUEID")?;
        let flag = r.i32("FLAG")?;
        let queue_offset = r.i64("QUEUEOFFSET")?;
        let commit_log_offset = r.i64("PHYSICALOFFSET")?;
        let sys = r.i32("SYSFLAG")?;
        let born_timestamp = r.i64("BORNTIMESTAMP")?;
        let born_host = r.host(sys & sys_flag::BORNHOST_V6 != 0, "BORNHOST")?;
        let store_timestamp = r.i64("STORETIMESTAMP")?;
        let store_host = r.host(sys & sys_flag::STOREHOST_V6 != 0, "STOREHOST")?;
        let reconsume_times = r.i32("RECONSUMETIMES")?;
        let prepared_transaction_offset = r.i64("PREPAREDTRANSACTIONOFFSET")?;
        let body_len = r.i32("BODYLEN")?;
        let body_len = r.len(i64::from(body_len), "body")?;
        let body = r.take(body_len, "BODY")?;
        let topic_len = if v2 {
            usize::from(r.i16("TOPICLEN")? as u16)
        } else {
            usize::from(r.u8("TOPICLEN")?)
        };
        let topic = std::str::from_utf8(r.take(topic_len, "TOPIC")?)
            .map_err(|_| MessageError::InvalidUtf8("topic"))?;
        let props_len = r.i16("PROPERTIESLEN")?;
        let props_len = r.len(i64::from(props_len), "properties")?;
        let properties = r.take(props_len, "PROPERTIES")?;
        if r.pos != total_size {
            return Err(MessageError::SizeMismatch {
                total: i64::from(total),
                computed: r.pos,
            });
        }
        if check_crc {
            let computed = body_crc(body);
            if computed != body_crc_v {
                return Err(MessageError::BadCrc {
                    stored: body_crc_v as u32,
                    computed: computed as u32,
                });
            }
        }
        Ok((
            Self {
                total_size,
                magic_code: magic,
                body_crc: body_crc_v,
                queue_id,
                flag,
                queue_offset,
                commit_log_offset,
                sys_flag: sys,
                born_timestamp,
                born_host,
                store_timestamp,
                store_host,
                reconsume_times,
                prepared_transaction_offset,
                body,
                topic,
                properties,
            },
            total_size,
        ))
    }

    pub fn properties_str(&self) -> Result<&'a str, MessageError> {
        std::str::from_utf8(self.properties).map_err(|_| MessageError::InvalidUtf8("properties"))
    }

    /// Looks up one property without building a map.
    pub fn property(&self, key: &str) -> Option<&'a str> {
        let s = self.properties_str().ok()?;
        s.split(PROPERTY_SEPARATOR).find_map(|item| {
            let (k, v) = item.split_once(NAME_VALUE_SEPARATOR)?;
            (k == key).then_some(v)
        })
    }

    pub fn to_owned(&self) -> Result<MessageExt, MessageError> {
        Ok(MessageExt {
            topic: self.topic.to_owned(),
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            commit_log_offset: self.commit_log_offset,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body: Bytes::copy_from_slice(self.body),
            properties: string_to_properties(self.properties_str()?),
        })
    }
}

/// Decodes every record of a pull body.
pub fn decode_all(mut buf: &[u8], check_crc: bool) -> Result<Vec<MessageExt>, MessageError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (view, n) = MessageView::decode(buf, check_crc)?;
        out.push(view.to_owned()?);
        buf = &buf[n..];
    }
    Ok(out)
}

/// One message of a batch body (`MessageDecoder.encodeMessages`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
}

/// Encodes a batch body: per message TOTALSIZE, MAGICCODE 0, BODYCRC 0, FLAG, BODYLEN, BODY,
/// PROPLEN (i16), PROPERTIES.
pub fn encode_batch(entries: &[BatchEntry]) -> Result<Bytes, MessageError> {
    let mut buf = BytesMut::new();
    for e in entries {
        let props = properties_to_string(&e.properties);
        if props.len() > MAX_PROPERTIES_LENGTH {
            return Err(MessageError::PropertiesTooLong(props.len()));
        }
        let size = 4 + 4 + 4 + 4 + 4 + e.body.len() + 2 + props.len();
        let size_word = size_field(size)?;
        buf.put_i32(size_word);
        buf.put_i32(0);
        buf.put_i32(0);
        buf.put_i32(e.flag);
        buf.put_i32(size_field(e.body.len())?);
        buf.put_slice(&e.body);
        buf.put_i16(props.len() as i16);
        buf.put_slice(props.as_bytes());
    }
    Ok(buf.freeze())
}

/// Decodes a batch body.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<BatchEntry>, MessageError> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::new();
    while r.pos < buf.len() {
        let start = r.pos;
        let total = r.i32("TOTALSIZE")?;
        let total = r.len(i64::from(total), "TOTALSIZE")?;
        let _magic = r.i32("MAGICCODE")?;
        let _crc = r.i32("BODYCRC")?;
        let flag = r.i32("FLAG")?;
        let body_len = r.i32("BODYLEN")?;
        let body_len = r.len(i64::from(body_len), "body")?;
        let body = r.take(body_len, "BODY")?;
        let props_len = r.i16("PROPERTIESLEN")?;
        let props_len = r.len(i64::from(props_len), "properties")?;
        let props = std::str::from_utf8(r.take(props_len, "PROPERTIES")?)
            .map_err(|_| MessageError::InvalidUtf8("properties"))?;
        if r.pos - start != total {
            return Err(MessageError::SizeMismatch {
                total: total as i64,
                computed: r.pos - start,
            });
        }
        out.push(BatchEntry {
            flag,
            body: Bytes::copy_from_slice(body),
            properties: string_to_properties(props),
        });
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The offset message id: store host ip, port (4 B) and commit-log offset (8 B) as upper-case hex;
/// 32 characters for IPv4, 56 for IPv6.
pub fn create_message_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut raw = Vec::with_capacity(28);
    match store_host.ip() {
        IpAddr::V4(ip) => raw.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => raw.extend_from_slice(&ip.octets()),
    }
    raw.extend_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw.extend_from_slice(&commit_log_offset.to_be_bytes());
    let mut s = String::with_capacity(raw.len() * 2);
    for b in raw {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}

/// Parses an offset message id into the store host and commit-log offset.
pub fn parse_message_id(id: &str) -> Result<(SocketAddr, i64), MessageError> {
    let bad = || MessageError::BadMessageId(id.to_owned());
    if !id.is_ascii() || !(id.len() == 32 || id.len() == 56) {
        return Err(bad());
    }
    let mut raw = Vec::with_capacity(id.len() / 2);
    for pair in id.as_bytes().chunks(2) {
        let hi = char::from(pair[0]).to_digit(16).ok_or_else(bad)?;
        let lo = char::from(pair[1]).to_digit(16).ok_or_else(bad)?;
        raw.push((hi * 16 + lo) as u8);
    }
    let ip_len = raw.len() - 12;
    let ip = if ip_len == 4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&raw[..4]);
        IpAddr::V4(Ipv4Addr::from(a))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&raw[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let mut port = [0u8; 4];
    port.copy_from_slice(&raw[ip_len..ip_len + 4]);
    let port = i32::from_be_bytes(port);
    let port = u16::try_from(port).map_err(|_| bad())?;
    let mut off = [0u8; 8];
    off.copy_from_slice(&raw[ip_len + 4..]);
    Ok((SocketAddr::new(ip, port), i64::from_be_bytes(off)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> MessageExt {
        let mut properties = BTreeMap::new();
        properties.insert("TAGS".to_owned(), "A".to_owned());
        MessageExt {
            topic: "T".to_owned(),
            queue_id: 1,
            flag: 2,
            queue_offset: 3,
            commit_log_offset: 4,
            sys_flag: 0,
            born_timestamp: 5,
            born_host: "1.2.3.4:9".parse().expect("addr"),
            store_timestamp: 6,
            store_host: "10.0.0.1:10911".parse().expect("addr"),
            reconsume_times: 7,
            prepared_transaction_offset: 8,
            body: Bytes::from_static(b"hi"),
            properties,
        }
    }

    #[test]
    fn v1_record_is_byte_exact() {
        let enc = sample().encode().expect("encode");
        // 91 fixed + 2 body + 1 topic + 5 properties ("TAGS\x01A\x02" is 7 bytes).
        assert_eq!(enc.len(), 91 + 2 + 1 + 7);
        let mut want = Vec::new();
        want.extend_from_slice(&101i32.to_be_bytes());
        want.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]);
        want.extend_from_slice(&body_crc(b"hi").to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(&3i64.to_be_bytes());
        want.extend_from_slice(&4i64.to_be_bytes());
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&5i64.to_be_bytes());
        want.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 9]);
        want.extend_from_slice(&6i64.to_be_bytes());
        want.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0x2A, 0x9F]);
        want.extend_from_slice(&7i32.to_be_bytes());
        want.extend_from_slice(&8i64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        want.extend_from_slice(&[1, b'T']);
        want.extend_from_slice(&[0, 7]);
        want.extend_from_slice(b"TAGS\x01A\x02");
        assert_eq!(&enc[..], &want[..]);
        let (back, n) = MessageExt::decode(&enc).expect("decode");
        assert_eq!(n, enc.len());
        assert_eq!(back, sample());
    }

    #[test]
    fn crc_matches_known_vector() {
        // crc32("123456789") = 0xCBF43926, masked to 31 bits.
        assert_eq!(body_crc(b"123456789"), 0x4BF4_3926);
    }

    #[test]
    fn ipv6_hosts_set_sysflag_and_round_trip() {
        let mut m = sample();
        m.born_host = "[::1]:1".parse().expect("addr");
        m.store_host = "[fe80::2]:10911".parse().expect("addr");
        let enc = m.encode().expect("encode");
        assert_eq!(enc.len(), 101 + 24);
        let (v, _) = MessageView::decode(&enc, true).expect("decode");
        assert_eq!(v.sys_flag, sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        assert_eq!(v.born_host, m.born_host);
        assert_eq!(v.store_host, m.store_host);
    }

    #[test]
    fn v2_record_decodes() {
        let enc = sample().encode().expect("encode");
        let mut v2 = enc[..90].to_vec();
        v2[4..8].copy_from_slice(&MAGIC_CODE_V2.to_be_bytes());
        v2.extend_from_slice(&[0, 1, b'T', 0, 7]);
        v2.extend_from_slice(b"TAGS\x01A\x02");
        let total = v2.len() as i32;
        v2[..4].copy_from_slice(&total.to_be_bytes());
        let (m, _) = MessageExt::decode(&v2).expect("decode");
        assert_eq!(m.topic, "T");
        assert_eq!(m.tags(), Some("A"));
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        let enc = sample().encode().expect("encode");
        for cut in 0..enc.len() {
            assert!(MessageView::decode(&enc[..cut], true).is_err(), "cut {cut}");
        }
        let mut bad = enc.to_vec();
        bad[88] ^= 0xFF;
        assert!(matches!(
            MessageView::decode(&bad, true),
            Err(MessageError::BadCrc { .. })
        ));
        let mut bad = enc.to_vec();
        bad[4] = 0;
        assert!(matches!(
            MessageView::decode(&bad, true),
            Err(MessageError::BadMagic(_))
        ));
        let mut bad = enc.to_vec();
        bad[84..88].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(MessageView::decode(&bad, false).is_err());
    }

    #[test]
    fn long_topic_and_properties_are_refused() {
        let mut m = sample();
        m.topic = "t".repeat(128);
        assert_eq!(m.encode(), Err(MessageError::TopicTooLong(128)));
        let mut m = sample();
        m.properties.insert("K".into(), "v".repeat(40_000));
        assert!(matches!(
            m.encode(),
            Err(MessageError::PropertiesTooLong(_))
        ));
    }

    #[test]
    fn sizes_beyond_i32_are_refused_not_wrapped() {
        assert_eq!(size_field(i32::MAX as usize), Ok(i32::MAX));
        let over = i32::MAX as usize + 1;
        assert_eq!(size_field(over), Err(MessageError::TooLarge(over)));
    }

    #[test]
    fn compressed_bodies_are_inflated_or_refused_by_name() {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello hello hello").expect("write");
        let packed = enc.finish().expect("finish");
        assert_eq!(uncompressed_body(0, &packed).expect("plain"), &packed[..]);
        for sys in [
            sys_flag::COMPRESSED,
            sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB_TYPE,
        ] {
            assert_eq!(
                uncompressed_body(sys, &packed).expect("zlib"),
                &b"hello hello hello"[..]
            );
        }
        let lz4 = sys_flag::COMPRESSED | sys_flag::COMPRESSION_LZ4_TYPE;
        let err = uncompressed_body(lz4, &packed).unwrap_err();
        assert!(err.to_string().contains("LZ4"), "{err}");
        let err = uncompressed_body(sys_flag::COMPRESSED, b"not zlib").unwrap_err();
        assert!(err.to_string().contains("zlib"), "{err}");
    }

    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // Overflows i32: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // A supplementary character counts as two UTF-16 code units.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83Di32 * 31 + 0xDE00);
    }

    #[test]
    fn message_id_round_trips() {
        let addr: SocketAddr = "10.0.0.1:10911".parse().expect("addr");
        let id = create_message_id(addr, 0x1234);
        assert_eq!(id, "0A00000100002A9F0000000000001234");
        assert_eq!(parse_message_id(&id), Ok((addr, 0x1234)));
        assert_eq!(parse_message_id(&id.to_lowercase()), Ok((addr, 0x1234)));
        let v6: SocketAddr = "[::1]:80".parse().expect("addr");
        let id6 = create_message_id(v6, 7);
        assert_eq!(id6.len(), 56);
        assert_eq!(parse_message_id(&id6), Ok((v6, 7)));
        assert!(parse_message_id("zz").is_err());
        assert!(parse_message_id(&"G".repeat(32)).is_err());
    }

    #[test]
    fn batch_body_is_byte_exact() {
        let e = BatchEntry {
            flag: 3,
            body: Bytes::from_static(b"ab"),
            properties: BTreeMap::from([("K".to_owned(), "V".to_owned())]),
        };
        let enc = encode_batch(std::slice::from_ref(&e)).expect("encode");
        let mut want = Vec::new();
        want.extend_from_slice(&28i32.to_be_bytes());
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b', 0, 4]);
        want.extend_from_slice(b"K\x01V\x02");
        assert_eq!(&enc[..], &want[..]);
        assert_eq!(decode_batch(&enc), Ok(vec![e]));
        assert!(decode_batch(&enc[..enc.len() - 1]).is_err());
    }

    #[test]
    fn properties_string_parses_like_java() {
        let m = string_to_properties("A\u{1}1\u{2}B\u{1}2\u{2}junk\u{2}");
        assert_eq!(m.len(), 2);
        assert_eq!(properties_to_string(&m), "A\u{1}1\u{2}B\u{1}2\u{2}");
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(ip.into()), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(ip.into()), p)),
        ]
    }

    proptest! {
        #[test]
        fn record_round_trips(
            topic in "[a-zA-Z0-9_%-]{1,127}",
            queue_id: i32, flag: i32, qo: i64, po: i64, sys in 0i32..0x10,
            bt: i64, st: i64, rt: i32, pto: i64,
            born in arb_addr(), store in arb_addr(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            props in proptest::collection::btree_map("[a-zA-Z_]{1,10}", "[^\u{1}\u{2}]{0,20}", 0..5),
        ) {
            let m = MessageExt {
                topic, queue_id, flag, queue_offset: qo, commit_log_offset: po, sys_flag: sys,
                born_timestamp: bt, born_host: born, store_timestamp: st, store_host: store,
                reconsume_times: rt, prepared_transaction_offset: pto, body: Bytes::from(body),
                properties: props,
            };
            let enc = m.encode().expect("encode");
            let (back, n) = MessageExt::decode(&enc).expect("decode");
            prop_assert_eq!(n, enc.len());
            let mut want = m.clone();
            want.sys_flag = m.effective_sys_flag();
            prop_assert_eq!(back, want);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = MessageView::decode(&bytes, true);
            let _ = decode_batch(&bytes);
            let _ = decode_all(&bytes, false);
        }
    }
}
