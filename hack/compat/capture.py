#!/usr/bin/env python3
"""Records RocketMQ remoting frames between real clients and Ferrum, standard library only.

    capture.py proxy --out DIR LISTEN=TARGET [LISTEN=TARGET ...]
        Forwards every TCP connection accepted on LISTEN (host:port) to TARGET unchanged and
        writes each frame seen in either direction to DIR/cNNN-SSSSS-<c2s|s2c>-<kind>.bin, the
        whole frame including its 4-byte big-endian length prefix. <kind> is req-<code> for a
        request and resp-<request code>-r<response code> for an answer (matched by opaque on
        the same connection). Prints "capture proxy ready" once every port listens; stops on
        SIGTERM / SIGINT.

    capture.py curate --from DIR --to DIR --client NAME --version V --how TEXT [--topic T]
        Picks a small set of request/answer pairs out of a proxy directory (route query,
        heartbeat, sends, pull, consumer offsets, broker registration), copies them to --to and
        appends their rows to --to/MANIFEST. Fails when a pair the client must have sent is
        missing.

The proxy forwards bytes as they arrive and parses a copy, so it never changes what the peers
see; a frame it cannot parse is still written (kind "unparsed") and forwarding goes on.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import sys
import threading

SERIALIZATIONS = {0: "JSON", 1: "ROCKETMQ"}
# RocketMQ LanguageCode ordinals, for the binary header's language byte.
LANGUAGES = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
    "PHP", "OMS", "RUST",
]
FLAG_RESPONSE = 1
FLAG_ONEWAY = 2


def parse_frame(frame):
    """Header fields of one whole frame (length prefix included), or None if malformed."""
    if len(frame) < 8:
        return None
    mark = struct.unpack(">I", frame[4:8])[0]
    ser = mark >> 24
    hlen = mark & 0xFFFFFF
    header = frame[8:8 + hlen]
    if len(header) != hlen or ser not in SERIALIZATIONS:
        return None
    out = {"serialization": SERIALIZATIONS[ser], "body": frame[8 + hlen:]}
    if ser == 0:
        try:
            h = json.loads(header.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        language = h.get("language")
        if isinstance(language, int):
            language = LANGUAGES[language] if 0 <= language < len(LANGUAGES) else str(language)
        out.update(code=int(h.get("code", 0)), flag=int(h.get("flag", 0)),
                   opaque=int(h.get("opaque", 0)), version=int(h.get("version", 0)),
                   language=language or "", ext=h.get("extFields") or {})
    else:
        if hlen < 17:
            return None
        code, lang, version, opaque, flag, rlen = struct.unpack(">hBhiii", header[:17])
        pos = 17 + rlen
        if rlen < 0 or pos + 4 > hlen:
            return None
        (elen,) = struct.unpack(">i", header[pos:pos + 4])
        pos += 4
        ext = {}
        end = pos + elen
        while pos < end:
            (klen,) = struct.unpack(">h", header[pos:pos + 2])
            key = header[pos + 2:pos + 2 + klen].decode("utf-8", "replace")
            pos += 2 + klen
            (vlen,) = struct.unpack(">i", header[pos:pos + 4])
            ext[key] = header[pos + 4:pos + 4 + vlen].decode("utf-8", "replace")
            pos += 4 + vlen
        out.update(code=code, flag=flag, opaque=opaque, version=version,
                   language=LANGUAGES[lang] if lang < len(LANGUAGES) else str(lang), ext=ext)
    return out


class Recorder:
    """Numbers frames across all connections and names answers after their requests."""

    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()
        self.seq = 0
        self.conns = 0
        # (conn, opaque) -> request code, for requests from either side.
        self.pending = {}

    def next_conn(self):
        with self.lock:
            self.conns += 1
            return self.conns

    def record(self, conn, direction, frame):
        try:
            info = parse_frame(frame)
        except (struct.error, IndexError, ValueError, TypeError):
            # A frame the parser cannot read is still recorded and still forwarded.
            info = None
        with self.lock:
            self.seq += 1
            seq = self.seq
            if info is None:
                kind = "unparsed"
            elif info["flag"] & FLAG_RESPONSE:
                req = self.pending.pop((conn, direction == "c2s", info["opaque"]), "x")
                kind = "resp-%s-r%d" % (req, info["code"])
            else:
                if not info["flag"] & FLAG_ONEWAY:
                    # The answer travels the other way.
                    self.pending[(conn, direction != "c2s", info["opaque"])] = info["code"]
                kind = "req-%d" % info["code"]
        name = "c%03d-%05d-%s-%s.bin" % (conn, seq, direction, kind)
        with open(os.path.join(self.out, name), "wb") as f:
            f.write(frame)


def pump(src, dst, recorder, conn, direction):
    buf = bytearray()
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            # Frames are recorded before the bytes that complete them are passed on, so an
            # answer can never be recorded ahead of its request.
            buf += data
            while len(buf) >= 4:
                (length,) = struct.unpack(">i", buf[:4])
                if length < 0 or length > 64 * 1024 * 1024:
                    # Not RocketMQ framing: keep forwarding, stop parsing.
                    recorder.record(conn, direction, bytes(buf))
                    buf = None
                    break
                if len(buf) < 4 + length:
                    break
                recorder.record(conn, direction, bytes(buf[:4 + length]))
                del buf[:4 + length]
            dst.sendall(data)
            if buf is None:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
                break
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listener, target, recorder):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
        except OSError as e:
            print("capture proxy: cannot reach %s:%d: %s" % (target[0], target[1], e),
                  file=sys.stderr)
            client.close()
            continue
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = recorder.next_conn()
        threading.Thread(target=pump, args=(client, upstream, recorder, conn, "c2s"),
                         daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, recorder, conn, "s2c"),
                         daemon=True).start()


def hostport(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def proxy(args):
    os.makedirs(args.out, exist_ok=True)
    recorder = Recorder(args.out)
    for pair in args.pairs:
        listen, _, target = pair.partition("=")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(hostport(listen))
        listener.listen(128)
        threading.Thread(target=serve, args=(listener, hostport(target), recorder),
                         daemon=True).start()
        print("capture proxy %s -> %s" % (listen, target), flush=True)
    print("capture proxy ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


# ------------------------------------------------------------------------------------------
# curate

# (name, request code, predicate over (request info, answer info)), in MANIFEST order. A code
# may appear in several rows (e.g. plain and compressed registration).
def _zlib(body):
    # A zlib stream: deflate method with a header checksum that divides by 31.
    return len(body) >= 2 and body[0] == 0x78 and ((body[0] << 8) | body[1]) % 31 == 0


def _ok(req, resp):
    return resp is None or resp["code"] == 0


WANTED = [
    ("route", 105, lambda req, resp, t: req["ext"].get("topic") == t and resp and resp["code"] == 0),
    ("heartbeat", 34, lambda req, resp, t: b'"subscriptionDataSet":[{' in req["body"]),
    ("send", 10, lambda req, resp, t: _ok(req, resp)),
    ("send-v2", 310, lambda req, resp, t: _ok(req, resp)),
    ("send-batch", 320, lambda req, resp, t: _ok(req, resp)),
    ("pull", 11, lambda req, resp, t: resp is not None and resp["code"] == 0),
    # The scenario's own topic, not the %RETRY% topic every push consumer also tracks.
    ("query-consumer-offset", 14, lambda req, resp, t: req["ext"].get("topic") == t),
    ("update-consumer-offset", 15, lambda req, resp, t: req["ext"].get("topic") == t),
    # Judged by the body: Apache 5.x compresses it under compressedRegister=true yet always
    # sends compressed=false in the header.
    ("register-broker", 103, lambda req, resp, t: not _zlib(req["body"])),
    ("register-broker-compressed", 103, lambda req, resp, t: _zlib(req["body"])),
]


def body_kind(code, is_response, req):
    if not is_response:
        return {
            34: "heartbeat",
            10: "message",
            310: "message",
            320: "batch",
            103: "register-compressed" if _zlib(req["body"]) else "register",
        }.get(code, "none")
    return {105: "route", 11: "pull-messages"}.get(code, "none")


def curate(args):
    frames = {}
    for name in sorted(os.listdir(args.src)):
        if not name.endswith(".bin"):
            continue
        with open(os.path.join(args.src, name), "rb") as f:
            data = f.read()
        try:
            info = parse_frame(data)
        except (struct.error, IndexError, ValueError, TypeError):
            info = None
        if info is None:
            continue
        conn, seq, direction = name.split("-")[:3]
        info.update(file=name, conn=conn, seq=int(seq), direction=direction, size=len(data))
        frames[name] = info
    ordered = sorted(frames.values(), key=lambda i: i["seq"])
    answers = {}
    for info in ordered:
        if info["flag"] & FLAG_RESPONSE:
            answers.setdefault((info["conn"], info["opaque"]), info)
    os.makedirs(args.dst, exist_ok=True)
    manifest = os.path.join(args.dst, "MANIFEST")
    rows = []
    # Numbering goes on after the pairs an earlier run wrote to the same directory.
    index = sum(1 for n in os.listdir(args.dst) if n.endswith("-request.bin"))
    for name, code, pred in WANTED:
        candidates = []
        for req in ordered:
            if req["code"] != code or req["flag"] & FLAG_RESPONSE or req["direction"] != "c2s":
                continue
            resp = None
            unanswered = False
            if not req["flag"] & FLAG_ONEWAY:
                resp = answers.get((req["conn"], req["opaque"]))
                if resp is not None and resp["seq"] < req["seq"]:
                    resp = None
                # A client may close before the answer of its last request arrives.
                unanswered = resp is None
            if pred(req, resp, args.topic):
                candidates.append((unanswered, req, resp))
        if not candidates:
            continue
        # Answered exchanges first; sorted() keeps the capture order otherwise.
        candidates = [(r, a) for _, r, a in sorted(candidates, key=lambda c: c[0])]
        if code == 11:
            # The smallest answer that carries messages keeps the vectors a few KB.
            candidates.sort(key=lambda p: len(p[1]["body"]) if p[1] else 0)
        req, resp = candidates[0]
        index += 1
        for role, info, request_code in (("request", req, code), ("response", resp, code)):
            if info is None:
                continue
            out = "%02d-%s-%s.bin" % (index, name, role)
            shutil.copyfile(os.path.join(args.src, info["file"]), os.path.join(args.dst, out))
            is_response = role == "response"
            rows.append("\t".join(str(v) for v in (
                out, args.client, args.version,
                "client-to-server" if info["direction"] == "c2s" else "server-to-client",
                info["code"], request_code, info["flag"], info["opaque"], info["language"],
                info["version"], info["serialization"],
                body_kind(request_code, is_response, req), args.how)))
    for need in args.require.split(",") if args.require else []:
        if not any(("-%s-request.bin" % need) in r.split("\t")[0] for r in rows):
            sys.exit("curate %s: no '%s' exchange was captured in %s" % (args.client, need, args.src))
    new = not os.path.exists(manifest)
    with open(manifest, "a", encoding="utf-8") as f:
        if new:
            f.write("# file\tclient\tclient_version\tdirection\tcode\trequest_code\tflag\topaque"
                    "\tlanguage\tversion\tserialization\tbody\thow\n")
        for r in rows:
            f.write(r + "\n")
    for r in rows:
        cols = r.split("\t")
        print("  %-40s code %-4s flag %s lang %-5s version %-4s %s" % (
            cols[0], cols[4], cols[6], cols[8], cols[9], cols[10]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy")
    p.add_argument("--out", required=True)
    p.add_argument("pairs", nargs="+", metavar="LISTEN=TARGET")
    c = sub.add_parser("curate")
    c.add_argument("--from", dest="src", required=True)
    c.add_argument("--to", dest="dst", required=True)
    c.add_argument("--client", required=True)
    c.add_argument("--version", required=True)
    c.add_argument("--how", required=True)
    c.add_argument("--topic")
    c.add_argument("--require", default="", help="comma list of names that must be present")
    args = parser.parse_args()
    if args.cmd == "proxy":
        proxy(args)
    else:
        curate(args)


if __name__ == "__main__":
    main()
