//! The HA wire format, as bytes only (no sockets), so every decoder is unit- and property-tested.
//!
//! Two phases share one TCP connection to the master's `haListenPort`:
//!
//! 1. **Handshake** (Ferrum's addition). Frames are `magic u32 | kind u8 | length u32 | body`.
//!    The master sends [`Challenge`] (a random nonce and its epoch); the slave answers [`Hello`]
//!    (its group, id, last epoch, max offset and an HMAC-SHA256 over the nonce and those fields,
//!    keyed by `haSecret`); the master answers [`HandshakeFrame::Welcome`] with its epoch table,
//!    or [`HandshakeFrame::Reject`] with a reason, and closes.
//! 2. **Streaming**, RocketMQ's DefaultHA frames unchanged: the slave reports its max offset as
//!    8 big-endian bytes; the master sends a 12-byte header (`offset i64`, `size i32`) followed by
//!    `size` CommitLog bytes; `size = 0` is a heartbeat.
//!
//! DefaultHA has no handshake, so anyone able to reach the HA port could report any offset and
//! make a SYNC_MASTER acknowledge unreplicated messages (apache/rocketmq#1155, #3015). The MAC
//! binds the report stream to a slave that knows the secret; the nonce prevents replaying an
//! old handshake.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::epoch::{EpochEntry, EpochTable};

/// `"FRHA"`: the first bytes of every handshake frame.
pub const HA_MAGIC: u32 = 0x4652_4841;
/// The handshake version this broker speaks.
pub const HA_PROTOCOL_VERSION: u16 = 1;
/// Handshake prefix: magic, kind, body length.
pub const PREFIX_LEN: usize = 9;
/// A handshake body never needs more (names are short, epoch tables small).
pub const MAX_HANDSHAKE_BODY: usize = 64 * 1024;
/// Slave → master offset report (DefaultHA `REPORT_HEADER_SIZE`).
pub const REPORT_LEN: usize = 8;
/// Master → slave transfer header (DefaultHA `TRANSFER_HEADER_SIZE`).
pub const TRANSFER_HEADER_LEN: usize = 12;
pub const NONCE_LEN: usize = 32;
pub const MAC_LEN: usize = 32;

const KIND_CHALLENGE: u8 = 1;
const KIND_HELLO: u8 = 2;
const KIND_WELCOME: u8 = 3;
const KIND_REJECT: u8 = 4;

/// Why HA bytes were refused; the connection is closed with this as the log reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaCodecError {
    #[error("bad magic {0:#010x}: not a Ferrum HA peer")]
    BadMagic(u32),
    #[error("unknown handshake frame kind {0}")]
    UnknownKind(u8),
    #[error("handshake frame of {0} bytes exceeds the {MAX_HANDSHAKE_BODY}-byte limit")]
    TooLong(u32),
    #[error("handshake frame body truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("unexpected handshake frame: expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("transfer header announces {size} bytes at offset {offset}, beyond the limit {limit}")]
    BadTransferSize {
        offset: i64,
        size: i32,
        limit: usize,
    },
    #[error("negative offset {0}")]
    NegativeOffset(i64),
}

/// Master → slave, first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub version: u16,
    pub nonce: [u8; NONCE_LEN],
    pub master_epoch: u32,
}

/// Slave → master, the answer to a [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub last_epoch: u32,
    pub last_epoch_start_offset: i64,
    pub max_offset: i64,
    pub mac: [u8; MAC_LEN],
}

/// Every handshake frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFrame {
    Challenge(Challenge),
    Hello(Hello),
    /// The slave is accepted: the master's epoch table and max offset.
    Welcome {
        epochs: EpochTable,
        master_max_offset: i64,
    },
    /// The slave is refused; the master closes after sending this.
    Reject {
        reason: String,
    },
}

impl HandshakeFrame {
    pub fn name(&self) -> &'static str {
        match self {
            HandshakeFrame::Challenge(_) => "CHALLENGE",
            HandshakeFrame::Hello(_) => "HELLO",
            HandshakeFrame::Welcome { .. } => "WELCOME",
            HandshakeFrame::Reject { .. } => "REJECT",
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are validated short by the broker config; a longer one is cut, never panics.
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The HELLO fields the MAC covers, in wire order, without the MAC.
fn hello_fields(hello: &Hello) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&hello.version.to_be_bytes());
    put_str(&mut out, &hello.cluster_name);
    put_str(&mut out, &hello.broker_name);
    out.extend_from_slice(&hello.broker_id.to_be_bytes());
    out.extend_from_slice(&hello.last_epoch.to_be_bytes());
    out.extend_from_slice(&hello.last_epoch_start_offset.to_be_bytes());
    out.extend_from_slice(&hello.max_offset.to_be_bytes());
    out
}

/// HMAC-SHA256(secret, nonce ‖ HELLO fields).
pub fn hello_mac(secret: &[u8], nonce: &[u8; NONCE_LEN], hello: &Hello) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    // HMAC takes keys of every length, so this never fails; an all-zero tag would not verify.
    if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        mac.update(nonce);
        mac.update(&hello_fields(hello));
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Checks `hello.mac` in constant time.
pub fn verify_hello(secret: &[u8], nonce: &[u8; NONCE_LEN], hello: &Hello) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(nonce);
    mac.update(&hello_fields(hello));
    mac.verify_slice(&hello.mac).is_ok()
}

/// Encodes a handshake frame with its prefix.
pub fn encode_handshake(frame: &HandshakeFrame) -> Vec<u8> {
    let (kind, body) = match frame {
        HandshakeFrame::Challenge(c) => {
            let mut b = Vec::with_capacity(2 + NONCE_LEN + 4);
            b.extend_from_slice(&c.version.to_be_bytes());
            b.extend_from_slice(&c.nonce);
            b.extend_from_slice(&c.master_epoch.to_be_bytes());
            (KIND_CHALLENGE, b)
        }
        HandshakeFrame::Hello(h) => {
            let mut b = hello_fields(h);
            b.extend_from_slice(&h.mac);
            (KIND_HELLO, b)
        }
        HandshakeFrame::Welcome {
            epochs,
            master_max_offset,
        } => {
            // Bounded so the frame always fits the decoder's limit.
            let entries = &epochs.entries[..epochs.entries.len().min(4096)];
            let mut b = Vec::with_capacity(12 + entries.len() * 12);
            b.extend_from_slice(&master_max_offset.to_be_bytes());
            b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                b.extend_from_slice(&e.epoch.to_be_bytes());
                b.extend_from_slice(&e.start_offset.to_be_bytes());
            }
            (KIND_WELCOME, b)
        }
        HandshakeFrame::Reject { reason } => {
            let mut b = Vec::new();
            put_str(&mut b, &reason[..floor_char_boundary(reason, 4096)]);
            (KIND_REJECT, b)
        }
    };
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    out.extend_from_slice(&HA_MAGIC.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Reads the prefix: the frame kind and the body length to read next.
pub fn decode_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<(u8, usize), HaCodecError> {
    let magic = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if magic != HA_MAGIC {
        return Err(HaCodecError::BadMagic(magic));
    }
    let kind = prefix[4];
    if !(KIND_CHALLENGE..=KIND_REJECT).contains(&kind) {
        return Err(HaCodecError::UnknownKind(kind));
    }
    let len = u32::from_be_bytes([prefix[5], prefix[6], prefix[7], prefix[8]]);
    if len as usize > MAX_HANDSHAKE_BODY {
        return Err(HaCodecError::TooLong(len));
    }
    Ok((kind, len as usize))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HaCodecError> {
        if self.buf.len() < n {
            return Err(HaCodecError::Malformed(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, HaCodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, HaCodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, HaCodecError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn string(&mut self, what: &'static str) -> Result<String, HaCodecError> {
        let len = self.u16(what)? as usize;
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| HaCodecError::Malformed(what))
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], HaCodecError> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    fn end(&self) -> Result<(), HaCodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(HaCodecError::Malformed("trailing bytes"))
        }
    }
}

/// Decodes the body of a frame whose prefix announced `kind`.
pub fn decode_body(kind: u8, body: &[u8]) -> Result<HandshakeFrame, HaCodecError> {
    let mut r = Reader { buf: body };
    let frame = match kind {
        KIND_CHALLENGE => HandshakeFrame::Challenge(Challenge {
            version: r.u16("version")?,
            nonce: r.array("nonce")?,
            master_epoch: r.u32("master epoch")?,
        }),
        KIND_HELLO => HandshakeFrame::Hello(Hello {
            version: r.u16("version")?,
            cluster_name: r.string("cluster name")?,
            broker_name: r.string("broker name")?,
            broker_id: r.i64("broker id")?,
            last_epoch: r.u32("last epoch")?,
            last_epoch_start_offset: r.i64("last epoch start offset")?,
            max_offset: r.i64("max offset")?,
            mac: r.array("mac")?,
        }),
        KIND_WELCOME => {
            let master_max_offset = r.i64("master max offset")?;
            let count = r.u32("epoch count")? as usize;
            if count > body.len() / 12 {
                return Err(HaCodecError::Malformed("epoch count"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(EpochEntry {
                    epoch: r.u32("epoch")?,
                    start_offset: r.i64("epoch start offset")?,
                });
            }
            HandshakeFrame::Welcome {
                epochs: EpochTable { entries },
                master_max_offset,
            }
        }
        KIND_REJECT => HandshakeFrame::Reject {
            reason: r.string("reason")?,
        },
        other => return Err(HaCodecError::UnknownKind(other)),
    };
    r.end()?;
    Ok(frame)
}

/// Decodes a whole encoded frame (prefix + body), for tests and fuzzing.
pub fn decode_handshake(bytes: &[u8]) -> Result<HandshakeFrame, HaCodecError> {
    let prefix: &[u8; PREFIX_LEN] = bytes
        .get(..PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(HaCodecError::Malformed("prefix"))?;
    let (kind, len) = decode_prefix(prefix)?;
    let body = bytes
        .get(PREFIX_LEN..PREFIX_LEN + len)
        .ok_or(HaCodecError::Malformed("body shorter than announced"))?;
    if bytes.len() != PREFIX_LEN + len {
        return Err(HaCodecError::Malformed("trailing bytes"));
    }
    decode_body(kind, body)
}

pub fn encode_report(offset: i64) -> [u8; REPORT_LEN] {
    offset.to_be_bytes()
}

pub fn decode_report(bytes: &[u8; REPORT_LEN]) -> Result<i64, HaCodecError> {
    let offset = i64::from_be_bytes(*bytes);
    if offset < 0 {
        return Err(HaCodecError::NegativeOffset(offset));
    }
    Ok(offset)
}

pub fn encode_transfer_header(offset: i64, size: i32) -> [u8; TRANSFER_HEADER_LEN] {
    let mut out = [0u8; TRANSFER_HEADER_LEN];
    out[..8].copy_from_slice(&offset.to_be_bytes());
    out[8..].copy_from_slice(&size.to_be_bytes());
    out
}

/// Decodes a transfer header; `limit` bounds the body a slave will buffer.
pub fn decode_transfer_header(
    bytes: &[u8; TRANSFER_HEADER_LEN],
    limit: usize,
) -> Result<(i64, usize), HaCodecError> {
    let mut o = [0u8; 8];
    o.copy_from_slice(&bytes[..8]);
    let offset = i64::from_be_bytes(o);
    let size = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if offset < 0 {
        return Err(HaCodecError::NegativeOffset(offset));
    }
    if size < 0 || size as usize > limit {
        return Err(HaCodecError::BadTransferSize {
            offset,
            size,
            limit,
        });
    }
    Ok((offset, size as usize))
}

/// How a run of CommitLog bytes splits into whole records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordWalk {
    /// Bytes from the start that are whole records, BLANK padding or file-end slack.
    pub whole_bytes: usize,
    /// Message records among them (BLANK padding is not a message).
    pub messages: u64,
    /// When the walk stopped at a record longer than the bytes given: its total size.
    pub next_record_size: Option<usize>,
    /// The walk stopped at bytes that are no record at all.
    pub corrupt: bool,
}

/// Walks `buf`, which holds CommitLog bytes starting at `offset`, record by record.
///
/// The master ships whole records only, so a slave's max offset — and thus every epoch start
/// and divergence point — always falls on a record boundary; the same walk counts the messages
/// of a truncated tail.
pub fn walk_records(buf: &[u8], offset: i64, file_size: i64) -> RecordWalk {
    use ferrum_protocol::message::{BLANK_MAGIC_CODE, MAGIC_CODE_V1, MAGIC_CODE_V2};
    let mut walk = RecordWalk::default();
    if file_size <= 0 || offset < 0 {
        walk.corrupt = true;
        return walk;
    }
    let mut pos = 0usize;
    loop {
        let at = offset + pos as i64;
        let left_in_file = (file_size - at % file_size) as usize;
        let rest = &buf[pos..];
        if rest.is_empty() {
            break;
        }
        if left_in_file < 8 {
            // Slack too short for a BLANK header: the store skips to the next file.
            if rest.len() < left_in_file {
                break;
            }
            pos += left_in_file;
            continue;
        }
        if rest.len() < 8 {
            break;
        }
        let total = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let magic = i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let is_blank = magic == BLANK_MAGIC_CODE && total as i64 == left_in_file as i64;
        let is_record = (magic == MAGIC_CODE_V1 || magic == MAGIC_CODE_V2)
            && total >= 8
            && total as usize <= left_in_file;
        if !is_blank && !is_record {
            walk.corrupt = true;
            break;
        }
        let total = total as usize;
        if rest.len() < total {
            walk.next_record_size = Some(total);
            break;
        }
        pos += total;
        if is_record {
            walk.messages += 1;
        }
    }
    walk.whole_bytes = pos;
    walk
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello {
            version: HA_PROTOCOL_VERSION,
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 1,
            last_epoch: 2,
            last_epoch_start_offset: 4096,
            max_offset: 10_000,
            mac: [0; MAC_LEN],
        }
    }

    #[test]
    fn mac_verifies_only_with_the_same_secret_nonce_and_fields() {
        let nonce = [7u8; NONCE_LEN];
        let mut h = hello();
        h.mac = hello_mac(b"s3cret", &nonce, &h);
        assert!(verify_hello(b"s3cret", &nonce, &h));
        assert!(!verify_hello(b"other", &nonce, &h));
        assert!(!verify_hello(b"s3cret", &[8u8; NONCE_LEN], &h));
        let mut forged = h.clone();
        forged.max_offset += 1;
        assert!(!verify_hello(b"s3cret", &nonce, &forged));
        // An empty secret is still a key: the MAC then only proves knowledge of the group name.
        let mut open = hello();
        open.mac = hello_mac(b"", &nonce, &open);
        assert!(verify_hello(b"", &nonce, &open));
    }

    #[test]
    fn wrong_magic_kind_and_length_are_refused() {
        let mut bytes = encode_handshake(&HandshakeFrame::Reject { reason: "x".into() });
        bytes[0] = 0;
        assert!(matches!(
            decode_handshake(&bytes),
            Err(HaCodecError::BadMagic(_))
        ));
        let mut bytes = encode_handshake(&HandshakeFrame::Reject { reason: "x".into() });
        bytes[4] = 99;
        assert_eq!(decode_handshake(&bytes), Err(HaCodecError::UnknownKind(99)));
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[..4].copy_from_slice(&HA_MAGIC.to_be_bytes());
        prefix[4] = KIND_HELLO;
        prefix[5..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_prefix(&prefix), Err(HaCodecError::TooLong(u32::MAX)));
        // A Java DefaultHA slave's first 8-byte report is not a Ferrum handshake.
        let mut report = [0u8; PREFIX_LEN];
        report[..8].copy_from_slice(&encode_report(0));
        assert!(decode_prefix(&report).is_err());
    }

    #[test]
    fn transfer_header_limits() {
        let h = encode_transfer_header(4096, 100);
        assert_eq!(decode_transfer_header(&h, 1024), Ok((4096, 100)));
        assert!(decode_transfer_header(&h, 99).is_err());
        assert!(decode_transfer_header(&encode_transfer_header(-1, 0), 10).is_err());
        assert!(decode_transfer_header(&encode_transfer_header(0, -5), 10).is_err());
        assert!(decode_report(&encode_report(-3)).is_err());
        assert_eq!(decode_report(&encode_report(77)), Ok(77));
    }

    fn record(total: usize) -> Vec<u8> {
        let mut r = vec![0u8; total];
        r[..4].copy_from_slice(&(total as i32).to_be_bytes());
        r[4..8].copy_from_slice(&ferrum_protocol::message::MAGIC_CODE_V1.to_be_bytes());
        r
    }

    #[test]
    fn walk_stops_at_partial_records_and_skips_blank_and_slack() {
        let file = 256i64;
        let mut buf = record(100);
        buf.extend(record(100));
        // 56 bytes left in the file: a BLANK covering them.
        let mut blank = vec![0u8; 56];
        blank[..4].copy_from_slice(&56i32.to_be_bytes());
        blank[4..8].copy_from_slice(&ferrum_protocol::message::BLANK_MAGIC_CODE.to_be_bytes());
        buf.extend(&blank);
        buf.extend(record(60));
        let walk = walk_records(&buf, 0, file);
        assert_eq!(walk.whole_bytes, buf.len());
        assert_eq!(walk.messages, 3);
        let cut = walk_records(&buf[..150], 0, file);
        assert_eq!(cut.whole_bytes, 100);
        assert_eq!(cut.next_record_size, Some(100));
        // Four bytes of slack at a file end are skipped without a header.
        let mut slack = record(252);
        slack.extend([0u8; 4]);
        slack.extend(record(10));
        let w = walk_records(&slack, 0, file);
        assert_eq!((w.whole_bytes, w.messages), (266, 2));
        let garbage = walk_records(&[1u8; 40], 0, file);
        assert!(garbage.corrupt);
        assert_eq!(garbage.whole_bytes, 0);
    }

    fn arb_string() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_%-]{0,40}"
    }

    fn arb_frame() -> impl Strategy<Value = HandshakeFrame> {
        prop_oneof![
            (any::<u16>(), any::<[u8; NONCE_LEN]>(), any::<u32>()).prop_map(
                |(version, nonce, master_epoch)| HandshakeFrame::Challenge(Challenge {
                    version,
                    nonce,
                    master_epoch
                })
            ),
            (
                any::<u16>(),
                arb_string(),
                arb_string(),
                any::<i64>(),
                any::<u32>(),
                any::<i64>(),
                any::<i64>(),
                any::<[u8; MAC_LEN]>()
            )
                .prop_map(|(version, c, b, id, e, s, m, mac)| {
                    HandshakeFrame::Hello(Hello {
                        version,
                        cluster_name: c,
                        broker_name: b,
                        broker_id: id,
                        last_epoch: e,
                        last_epoch_start_offset: s,
                        max_offset: m,
                        mac,
                    })
                }),
            (
                proptest::collection::vec((any::<u32>(), any::<i64>()), 0..20),
                any::<i64>()
            )
                .prop_map(|(entries, max)| HandshakeFrame::Welcome {
                    epochs: EpochTable {
                        entries: entries
                            .into_iter()
                            .map(|(epoch, start_offset)| EpochEntry {
                                epoch,
                                start_offset
                            })
                            .collect()
                    },
                    master_max_offset: max,
                }),
            ".{0,100}".prop_map(|reason| HandshakeFrame::Reject { reason }),
        ]
    }

    proptest! {
        #[test]
        fn handshake_round_trips(frame in arb_frame()) {
            let bytes = encode_handshake(&frame);
            prop_assert_eq!(decode_handshake(&bytes), Ok(frame));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_handshake(&bytes);
            let _ = walk_records(&bytes, 0, 128);
            if bytes.len() >= TRANSFER_HEADER_LEN {
                let mut h = [0u8; TRANSFER_HEADER_LEN];
                h.copy_from_slice(&bytes[..TRANSFER_HEADER_LEN]);
                let _ = decode_transfer_header(&h, 1 << 20);
            }
        }

        #[test]
        fn truncated_frames_are_errors(frame in arb_frame(), cut in 0usize..40) {
            let bytes = encode_handshake(&frame);
            let cut = cut.min(bytes.len().saturating_sub(1));
            prop_assert!(decode_handshake(&bytes[..cut]).is_err());
        }

        #[test]
        fn transfer_header_round_trips(offset in 0i64..i64::MAX, size in 0i32..1_000_000) {
            let h = encode_transfer_header(offset, size);
            prop_assert_eq!(decode_transfer_header(&h, 1_000_000), Ok((offset, size as usize)));
        }
    }
}
