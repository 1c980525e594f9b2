#!/usr/bin/env python3
"""Independent verifier of a Logbook journal directory.

Written from schemas/journal-format.md alone (it does not call or link the Rust code), so that
an auditor can check a journal with a second implementation.

Usage:
    verify_journal.py [--max-record-bytes N] JOURNAL_DIR

Prints exactly one line on stdout:
    ok <records> <head_hash_hex>            exit 0
    damaged <first_bad_offset> <kind>       exit 1
where <kind> is one of checksum, frame, chain_broken, offset_sequence, time_order, block,
footer, missing_segment (spec section 9). Details (segment file, reason, torn tail) go to
stderr. Exit 2 on bad usage or an I/O error (an unreadable file is not damage).

Dependencies (tools/requirements.txt): blake3, zstandard, and crc32c (a C implementation of
CRC-32C). If the crc32c package is missing, a pure-Python table-driven CRC-32C is used instead
(same results, much slower); both are checked against the standard test vector at start-up.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import sys
from dataclasses import dataclass

import blake3
import zstandard

# --- constants (spec sections 5 and 6) ------------------------------------------------------------

FRAME_PREFIX = 8  # len u32 + crc u32
BODY_FIXED = 50  # offset u64 + ts i64 + schema_version u16 + hash [32]
GENESIS = bytes(32)
# The format's hard payload limit (PAYLOAD_BYTES_MAX, 16 MiB): decoders accept payloads up to it
# whatever max_record_bytes the journal was appended with (that is an append-side limit).
DEFAULT_MAX_RECORD_BYTES = 16 << 20

SEGMENT_MAGIC = b"LBKSEG01"
TRAILER_MAGIC = b"LBKEND01"
TRAILER_BYTES = 16
FOOTER_VERSION = 1
FOOTER_FIXED = 110
BLOCK_ENTRY = 80
BLOCK_RAW_MAX = 64 << 20

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

FRAME_HEAD = struct.Struct("<II")
FRAME_FIXED = struct.Struct("<QqH")
FOOTER_HEAD = struct.Struct("<HQQQqq32s32sI")  # 110 bytes
ENTRY = struct.Struct("<QIqqQIII32s")  # 80 bytes
assert FOOTER_HEAD.size == FOOTER_FIXED and ENTRY.size == BLOCK_ENTRY

# --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and xorout 0xFFFFFFFF) ------------

try:
    from crc32c import crc32c  # accepts any bytes-like object

    CRC_IMPL = "crc32c package"
except ImportError:  # pragma: no cover - fallback for auditors without the C package
    _TABLE = []
    for _n in range(256):
        _c = _n
        for _ in range(8):
            _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
        _TABLE.append(_c)

    def crc32c(data) -> int:
        crc = 0xFFFFFFFF
        for byte in bytes(data):
            crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

    CRC_IMPL = "pure Python table"

if crc32c(b"123456789") != 0xE3069283:
    raise SystemExit(f"CRC-32C self-test failed ({CRC_IMPL})")


def chain_hash(prev: bytes, offset: int, ts_us: int, version: int, payload) -> bytes:
    """BLAKE3(prev_hash || offset u64 LE || ts_us i64 LE || schema_version u16 LE || payload)."""
    h = blake3.blake3(prev)
    h.update(FRAME_FIXED.pack(offset, ts_us, version))
    h.update(payload)
    return h.digest()


# Known answer: record 0 of the worked example (spec section 11.1).
if (
    chain_hash(GENESIS, 0, 1795000000123456, 1, b'{"type":"task.progress","pct":50}').hex()
    != "60a7c25dc614b9ab23690110d1605cb30ce910808aba7c6bb16c833b51fa8642"
):
    raise SystemExit("chain hash self-test failed")


# --- damage ---------------------------------------------------------------------------------------


class Damage(Exception):
    """The first record that cannot be trusted, and why."""

    def __init__(self, offset: int, kind: str, detail: str, path: str = ""):
        super().__init__(detail)
        self.offset, self.kind, self.detail, self.path = offset, kind, detail, path


def damage_at(offset: int, kind: str, detail: str):
    raise Damage(offset, kind, detail)


# --- file names (spec section 3.1) ----------------------------------------------------------------

_DIGITS = frozenset("0123456789")


def _offset(text: str):
    if len(text) != 20 or not set(text) <= _DIGITS:
        return None
    value = int(text)
    return value if value <= U64_MAX else None


def parse_name(name: str):
    """('sealed', first, last) | ('raw', first) | ('temp',) | None for any other file."""
    if name.endswith(".tmp"):
        return ("temp",) if parse_name(name[: -len(".tmp")]) not in (None, ("temp",)) else None
    if name.endswith(".seg.zst"):
        first, sep, last = name[: -len(".seg.zst")].partition("-")
        a, b = _offset(first), _offset(last)
        if sep and a is not None and b is not None and a <= b:
            return ("sealed", a, b)
        return None
    if name.endswith(".log"):
        a = _offset(name[: -len(".log")])
        return ("raw", a) if a is not None else None
    return None


# --- unsealed segments (spec sections 5 and 8.1) --------------------------------------------------


class FrameError(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail  # kind: "frame" or "checksum"


@dataclass
class Frame:
    offset: int
    ts_us: int
    version: int
    hash: bytes
    payload: memoryview
    size: int


def decode_frame(buf: memoryview, pos: int, max_payload: int) -> Frame:
    """Decodes the frame at buf[pos:], checking only its length bounds and CRC-32C."""
    end = len(buf)
    if pos + FRAME_PREFIX > end:
        raise FrameError("frame", "frame cut short (prefix)")
    body_len, crc = FRAME_HEAD.unpack_from(buf, pos)
    # An empty payload (body_len == 50) is a bad length too: writers never append one.
    if body_len <= BODY_FIXED or body_len - BODY_FIXED > max_payload:
        raise FrameError("frame", f"impossible length {body_len}")
    body_end = pos + FRAME_PREFIX + body_len
    if body_end > end:
        raise FrameError("frame", "frame cut short")
    body = buf[pos + FRAME_PREFIX : body_end]
    if crc32c(body) != crc:
        raise FrameError("checksum", "checksum mismatch")
    offset, ts_us, version = FRAME_FIXED.unpack_from(body, 0)
    return Frame(offset, ts_us, version, bytes(body[18:50]), body[50:], FRAME_PREFIX + body_len)


def _u16_range_pattern(lo: int, hi: int) -> bytes:
    """Regex (bytes) matching two bytes whose little-endian value is in lo..=hi (0..=0xFFFF)."""

    def cls(a: int, b: int) -> bytes:
        return b"[\\x%02x-\\x%02x]" % (a, b)

    def lit(a: int) -> bytes:
        return b"\\x%02x" % a

    (lo0, lo1), (hi0, hi1) = (lo & 0xFF, lo >> 8), (hi & 0xFF, hi >> 8)
    if lo1 == hi1:
        return cls(lo0, hi0) + lit(lo1)
    alts = [cls(lo0, 0xFF) + lit(lo1)]
    if lo1 + 1 <= hi1 - 1:
        alts.append(cls(0, 0xFF) + cls(lo1 + 1, hi1 - 1))
    alts.append(cls(0, hi0) + lit(hi1))
    return b"(?:" + b"|".join(alts) + b")"


def _offset_range_regex(lo: int, hi: int):
    """Compiled regex matching (zero-width) where 8 bytes read as u64 LE lie in lo..=hi."""
    alts = []
    for top in range(lo >> 16, (hi >> 16) + 1):
        a = max(lo, top << 16) & 0xFFFF
        b = min(hi, (top << 16) | 0xFFFF) & 0xFFFF
        alts.append(_u16_range_pattern(a, b) + re.escape(top.to_bytes(6, "little")))
    return re.compile(b"(?=(?:" + b"|".join(alts) + b"))", re.DOTALL)


def valid_frame_after(rest: memoryview, next_offset: int, max_payload: int) -> bool:
    """Spec 8.1: does any byte position of `rest` start a frame that passes its length and CRC
    checks and whose offset field o satisfies next <= o <= next + len(rest) // 58 + 1?"""
    plausible = len(rest) // (FRAME_PREFIX + BODY_FIXED) + 1
    hi = min(next_offset + plausible, U64_MAX)
    pattern = _offset_range_regex(next_offset, hi)
    data = bytes(rest)
    for match in pattern.finditer(data, FRAME_PREFIX):
        try:
            decode_frame(rest, match.start() - FRAME_PREFIX, max_payload)
            return True
        except FrameError:
            continue
    return False


# --- sealed segments (spec sections 6, 7.2 and 7.3) -----------------------------------------------


@dataclass
class BlockEntry:
    first_offset: int
    count: int
    first_ts: int
    last_ts: int
    file_pos: int
    compressed_len: int
    raw_len: int
    compressed_crc: int
    end_hash: bytes

    @property
    def last_offset(self) -> int:
        return self.first_offset + max(self.count, 1) - 1


@dataclass
class Footer:
    first_offset: int
    last_offset: int
    count: int
    first_ts: int
    last_ts: int
    prev_hash: bytes
    last_hash: bytes
    blocks: list


def _bad_footer(why: str):
    raise Damage(-1, "footer", why)  # offset filled in by the caller (the segment's first)


def parse_footer(data: bytes) -> Footer:
    """Spec 6.1, 6.4, 6.5 and rules F1-F14 (7.2)."""
    if data[:8] != SEGMENT_MAGIC:
        _bad_footer("segment magic missing")
    if len(data) < TRAILER_BYTES:
        _bad_footer("segment shorter than its trailer")
    trailer_pos = len(data) - TRAILER_BYTES
    footer_len, footer_crc = struct.unpack_from("<II", data, trailer_pos)
    if data[trailer_pos + 8 :] != TRAILER_MAGIC:
        _bad_footer("trailer magic missing")
    footer_pos = trailer_pos - footer_len
    if footer_pos < len(SEGMENT_MAGIC):
        _bad_footer("footer length exceeds the file")
    raw = data[footer_pos:trailer_pos]
    if crc32c(raw) != footer_crc:
        _bad_footer("footer checksum mismatch")
    if len(raw) < FOOTER_FIXED:
        _bad_footer("footer too short")
    version, first, last, count, first_ts, last_ts, prev_hash, last_hash, nblocks = (
        FOOTER_HEAD.unpack_from(raw, 0)
    )
    if version != FOOTER_VERSION:
        _bad_footer(f"unknown footer version {version}")
    if len(raw) != FOOTER_FIXED + nblocks * BLOCK_ENTRY:
        _bad_footer("footer length disagrees with its block count")
    blocks = [
        BlockEntry(*ENTRY.unpack_from(raw, FOOTER_FIXED + i * BLOCK_ENTRY)) for i in range(nblocks)
    ]
    footer = Footer(first, last, count, first_ts, last_ts, prev_hash, last_hash, blocks)
    check_footer(footer, footer_pos)
    return footer


def check_footer(f: Footer, footer_pos: int) -> None:
    if f.last_offset < f.first_offset or f.count != f.last_offset - f.first_offset + 1:
        _bad_footer("record count disagrees with the offset range")
    if f.last_offset >= U64_MAX:
        # The offset after the last block (last_offset + 1) must fit in u64 (F6, F11).
        _bad_footer("last offset leaves no room for a successor (must be < 2^64 - 1)")
    if f.last_ts < f.first_ts:
        _bad_footer("time range runs backwards")
    if not f.blocks:
        _bad_footer("no blocks")
    head, tail = f.blocks[0], f.blocks[-1]
    if head.first_offset != f.first_offset or head.first_ts != f.first_ts:
        _bad_footer("first block does not start the segment")
    if (
        tail.last_offset != f.last_offset
        or tail.last_ts != f.last_ts
        or tail.end_hash != f.last_hash
    ):
        _bad_footer("last block does not end the segment")
    next_offset, next_pos, prev_ts = f.first_offset, len(SEGMENT_MAGIC), f.first_ts
    for b in f.blocks:
        if b.count == 0 or b.first_offset != next_offset:
            _bad_footer(f"block at offset {b.first_offset} is out of sequence")
        if b.file_pos != next_pos or b.raw_len > BLOCK_RAW_MAX:
            _bad_footer(f"block at offset {b.first_offset} has a bad position or size")
        if b.first_ts < prev_ts or b.last_ts < b.first_ts:
            _bad_footer(f"block at offset {b.first_offset} runs backwards in time")
        next_offset = b.first_offset + b.count
        next_pos = b.file_pos + b.compressed_len
        prev_ts = b.last_ts
    if next_pos != footer_pos:
        _bad_footer("blocks do not end where the footer starts")


_DCTX = zstandard.ZstdDecompressor()
_ZSTD_FEED = 2048  # input fed per call, bounding output overshoot of a forged block


def decompress_block(compressed: bytes, entry: BlockEntry) -> bytes:
    """Spec 6.2 and rules B1-B2: the CRC-32C of the compressed bytes matches the index entry
    (checked before decompression, so even a byte zstd would ignore, such as an unused
    frame-header bit, is caught); then the block is a sequence of complete zstd frames (the
    writer emits exactly one, with a content checksum, which libzstd verifies) whose output is
    exactly raw_len bytes."""
    if len(compressed) != entry.compressed_len:
        damage_at(entry.first_offset, "block", "compressed length disagrees with the index")
    if crc32c(compressed) != entry.compressed_crc:
        damage_at(entry.first_offset, "block", "checksum of the compressed bytes mismatches")
    out = bytearray()
    pos, size = 0, len(compressed)
    try:
        while pos < size:
            obj = _DCTX.decompressobj()
            while not obj.eof and pos < size:
                piece = compressed[pos : pos + _ZSTD_FEED]
                out += obj.decompress(piece)
                if len(out) > entry.raw_len:
                    damage_at(entry.first_offset, "block", "block decompresses past raw_len")
                pos += len(piece) - (len(obj.unused_data) if obj.eof else 0)
            if not obj.eof:
                damage_at(entry.first_offset, "block", "zstd frame cut short")
    except zstandard.ZstdError as e:
        damage_at(entry.first_offset, "block", f"zstd: {e}")
    if len(out) != entry.raw_len:
        damage_at(entry.first_offset, "block", "decompressed length disagrees with the index")
    return bytes(out)


def varint(buf: bytes, at: int):
    """Unsigned LEB128, at most 10 bytes, the 10th at most 1; None if invalid or cut short."""
    value = 0
    for i in range(10):
        if at + i >= len(buf):
            return None
        byte = buf[at + i]
        if i == 9 and byte > 1:
            return None
        value |= (byte & 0x7F) << (7 * i)
        if byte & 0x80 == 0:
            return value, i + 1
    return None


def decode_block(raw: bytes, entry: BlockEntry, prev_hash: bytes) -> bytes:
    """Spec 6.3 and rules B3-B11 (7.3): decodes every record, recomputing the chain from
    `prev_hash`; returns the block's end hash."""
    at, n, chain, ts, offset = 0, 0, prev_hash, entry.first_ts, entry.first_offset
    while at < len(raw):
        if n == entry.count:
            damage_at(offset, "frame", "block holds more records than its index says")
        fields = []
        cur = at
        for what in ("length", "time delta", "schema version"):
            got = varint(raw, cur)
            if got is None:
                damage_at(offset, "frame", f"bad {what}")
            fields.append(got[0])
            cur += got[1]
        length, delta, version = fields
        if version > 0xFFFF:
            damage_at(offset, "frame", "bad schema version")
        payload_end = cur + length
        if payload_end + 4 > len(raw):
            damage_at(offset, "frame", "record runs past the block")
        if n == 0 and delta != 0:
            # The first record's delta is relative to the entry's first_ts and must be 0.
            damage_at(offset, "time_order", "first record of the block has a nonzero time delta")
        if length == 0:
            damage_at(offset, "frame", "empty payload")
        if delta > I64_MAX or ts + delta > I64_MAX:
            damage_at(offset, "time_order", "time delta out of range")
        ts += delta
        payload = raw[cur:payload_end]
        digest = chain_hash(chain, offset, ts, version, payload)
        if digest[:4] != raw[payload_end : payload_end + 4]:
            damage_at(offset, "chain_broken", "hash prefix does not match the recomputed chain")
        chain = digest
        n += 1
        offset += 1
        at = payload_end + 4
    if n != entry.count:
        damage_at(offset, "frame", "block holds fewer records than its index says")
    if ts != entry.last_ts:
        damage_at(entry.last_offset, "time_order", "last timestamp disagrees with the index")
    if chain != entry.end_hash:
        damage_at(entry.last_offset, "chain_broken", "block end hash disagrees with the index")
    return chain


# --- the directory (spec sections 3, 4, 7.4 and 8.3) ----------------------------------------------


@dataclass
class State:
    expected: int = 0
    head: bytes = GENESIS
    last_ts: int = I64_MIN
    records: int = 0
    torn: int = 0


def verify_sealed(path: str, first: int, last: int, st: State) -> None:
    with open(path, "rb") as f:
        data = f.read()
    try:
        footer = parse_footer(data)
    except Damage as d:
        d.offset = first
        raise
    if footer.first_offset != first or footer.last_offset != last:
        damage_at(first, "footer", "offsets disagree with the file name")
    if footer.prev_hash != st.head:
        damage_at(first, "chain_broken", "footer prev_hash does not continue the chain")
    if footer.first_ts < st.last_ts:
        damage_at(first, "time_order", "segment starts before the previous record")
    prev = footer.prev_hash
    for entry in footer.blocks:
        compressed = data[entry.file_pos : entry.file_pos + entry.compressed_len]
        raw = decompress_block(compressed, entry)
        prev = decode_block(raw, entry, prev)
        st.records += entry.count
    st.head, st.last_ts, st.expected = footer.last_hash, footer.last_ts, last + 1


def closed_whole(path: str, first: int, length: int) -> bool:
    """Spec 3.5: an intact clean-close marker `{path}.closed` naming this segment and exactly
    its length says the segment was whole, so it cannot end in a torn tail."""
    try:
        with open(path + ".closed", "rb") as f:
            marker = f.read()
    except OSError:
        return False
    if len(marker) < 8 + 8 * 3 + 32 + 8 + 4 + 4:
        return False
    body, crc = marker[:-4], int.from_bytes(marker[-4:], "little")
    if crc32c(body) != crc or body[:8] != b"LBKCLS01":
        return False
    marked_first = int.from_bytes(body[8:16], "little")
    marked_bytes = int.from_bytes(body[16:24], "little")
    return marked_first == first and marked_bytes == length


def verify_raw(path: str, first: int, is_last: bool, st: State, max_payload: int) -> None:
    with open(path, "rb") as f:
        data = f.read()
    # The last segment may end in a torn tail, unless its writer closed it cleanly (3.5).
    is_last = is_last and not closed_whole(path, first, len(data))
    buf = memoryview(data)
    pos = 0
    while pos < len(buf):
        try:
            frame = decode_frame(buf, pos, max_payload)
        except FrameError as e:
            rest = buf[pos:]
            if is_last and not valid_frame_after(rest, st.expected, max_payload):
                st.torn = len(rest)
                print(
                    f"note: torn tail of {len(rest)} bytes at byte {pos} of {path} "
                    f"({e.detail}); not damage, cut on the next open",
                    file=sys.stderr,
                )
                return
            damage_at(st.expected, e.kind, e.detail)
        if frame.offset != st.expected:
            damage_at(
                st.expected,
                "offset_sequence",
                f"offset out of sequence: expected {st.expected}, found {frame.offset}",
            )
        if frame.ts_us < st.last_ts:
            damage_at(st.expected, "time_order", "timestamp earlier than the previous record's")
        digest = chain_hash(st.head, frame.offset, frame.ts_us, frame.version, frame.payload)
        if digest != frame.hash:
            damage_at(st.expected, "chain_broken", "stored hash differs from the recomputed one")
        st.head, st.last_ts = digest, frame.ts_us
        st.records += 1
        st.expected += 1
        pos += frame.size


def verify_dir(directory: str, max_payload: int) -> State:
    """Spec 8.3: every non-superseded segment, sealed or not, in one offset order."""
    sealed, raws = [], []
    for name in os.listdir(directory):
        parsed = parse_name(name)
        if parsed is None:
            continue
        path = os.path.join(directory, name)
        if parsed[0] == "sealed":
            sealed.append((parsed[1], parsed[2], path))
        elif parsed[0] == "raw":
            raws.append((parsed[1], path))
        else:
            print(f"note: ignoring leftover temporary file {path}", file=sys.stderr)
    sealed.sort()
    raws.sort()
    sealed_firsts = {s[0] for s in sealed}
    for first, path in raws:
        if first in sealed_firsts:
            print(f"note: ignoring {path}, superseded by its sealed twin", file=sys.stderr)
    # One offset order over sealed and unsealed segments: normally every unsealed one comes after
    # the sealed ones, but a segment whose sealing failed stays unsealed between sealed ones.
    # Sealed segments sharing a `first` keep their (first, last) order (the sort is stable).
    segments = [(first, last, path) for first, last, path in sealed] + [
        (first, None, path) for first, path in raws if first not in sealed_firsts
    ]
    segments.sort(key=lambda seg: seg[0])

    st = State()
    current = ""
    try:
        for i, (first, last, path) in enumerate(segments):
            current = path
            if first != st.expected:
                raise Damage(
                    st.expected,
                    "missing_segment",
                    f"missing segment: offsets jump from {st.expected} to {first}",
                    path,
                )
            if last is not None:
                verify_sealed(path, first, last, st)
            else:
                # Only the last segment overall can end in a torn tail.
                verify_raw(path, first, i + 1 == len(segments), st, max_payload)
    except Damage as d:
        d.path = d.path or current
        raise
    return st


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("journal_dir", help="the journal directory (e.g. DATA/journal)")
    parser.add_argument(
        "--max-record-bytes",
        type=int,
        default=DEFAULT_MAX_RECORD_BYTES,
        help="largest payload an unsealed frame may declare (default %(default)s: the format's "
        "hard limit PAYLOAD_BYTES_MAX, 16 MiB, which `logbook verify` uses too)",
    )
    args = parser.parse_args(argv)
    try:
        st = verify_dir(args.journal_dir, args.max_record_bytes)
    except Damage as d:
        print(f"damaged {d.offset} {d.kind}")
        print(f"first bad offset {d.offset} in {d.path}: {d.kind}: {d.detail}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"ok {st.records} {st.head.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
