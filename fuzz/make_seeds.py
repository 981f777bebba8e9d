#!/usr/bin/env python3
"""Writes seed inputs for the compressed_records and validate_batches fuzz
targets: single RecordBatch v2 files (valid CRC32C) whose records section is
compressed with gzip (stdlib), snappy (hand-made literal blocks, raw and
xerial-framed), lz4 frames (the `lz4` CLI) and zstd (the `zstd` CLI), with
several encoder options each. Skips a codec whose CLI is missing.
Usage: fuzz/make_seeds.py  (from anywhere; writes into fuzz/corpus/<target>)."""

import gzip
import shutil
import struct
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ["compressed_records", "validate_batches"]
BASE_TS = 1_700_000_000_000


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v: int) -> bytes:
    """Zigzag varint, as Kafka's record fields use."""
    z = (v << 1) ^ (v >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def record(offset_delta: int, key, value, headers=()) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += varint(offset_delta * 7)  # timestamp delta
    body += varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        body += varint(len(hk)) + hk + varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def batch(records: list, codec: int, compress) -> bytes:
    section = b"".join(records)
    payload = compress(section)
    n = len(records)
    after_crc = struct.pack(">hiqqqhii", codec, n - 1, BASE_TS, BASE_TS + 7 * (n - 1), -1, -1, -1, n) + payload
    head = struct.pack(">qiib", 0, 4 + 1 + 4 + len(after_crc), 0, 2)
    return head + struct.pack(">I", crc32c(after_crc)) + after_crc


def snappy_raw(data: bytes) -> bytes:
    """A raw snappy block made of literals only (valid, uncompressed)."""
    out = bytearray()
    n = len(data)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    for i in range(0, len(data), 60):
        chunk = data[i : i + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
    return bytes(out)


def snappy_xerial(data: bytes) -> bytes:
    out = bytearray(b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1))
    for i in range(0, len(data), 256):
        block = snappy_raw(data[i : i + 256])
        out += struct.pack(">i", len(block)) + block
    return bytes(out)


def cli(*argv):
    def run(data: bytes) -> bytes:
        return subprocess.run(argv, input=data, capture_output=True, check=True).stdout

    return run


def main():
    keyed = [
        record(0, b"k0", b"v0"),
        record(1, b"key-1", b"value " * 20, [(b"h", b"x")]),
        record(2, b"k0", None),  # tombstone for k0
        record(3, b"k3", b"repeat repeat repeat repeat repeat repeat repeat"),
    ]
    keyless = [record(0, b"k0", b"v0"), record(1, None, b"no key here"), record(2, b"k2", b"v2")]
    big = [record(i, b"key-%d" % (i % 5), b"abcdefgh" * 24) for i in range(10)]
    codecs = {
        "gzip": (1, lambda d: gzip.compress(d, mtime=0)),
        "snappy-raw": (2, snappy_raw),
        "snappy-xerial": (2, snappy_xerial),
    }
    if shutil.which("lz4"):
        codecs.update(
            {
                "lz4": (3, cli("lz4", "-c", "-q")),
                "lz4-64k-linked": (3, cli("lz4", "-c", "-q", "-B4", "-BD")),
                "lz4-blockcrc-nocrc": (3, cli("lz4", "-c", "-q", "-BX", "--no-frame-crc")),
                "lz4-contentsize-9": (3, cli("lz4", "-c", "-q", "-9", "--content-size")),
                "lz4-legacy": (3, cli("lz4", "-c", "-q", "-l")),
            }
        )
    if shutil.which("zstd"):
        codecs.update(
            {
                "zstd-1": (4, cli("zstd", "-c", "-q", "-1")),
                "zstd-19-check": (4, cli("zstd", "-c", "-q", "-19", "--check")),
                "zstd-3-nocheck": (4, cli("zstd", "-c", "-q", "-3", "--no-check")),
                "zstd-long-window": (4, cli("zstd", "-c", "-q", "--long=27")),
            }
        )
    for name, (codec, compress) in codecs.items():
        for kind, recs in (("keyed", keyed), ("keyless", keyless), ("big", big)):
            data = batch(recs, codec, compress)
            assert len(data) <= 4096, (name, kind, len(data))
            for t in TARGETS:
                d = HERE / "corpus" / t
                d.mkdir(parents=True, exist_ok=True)
                (d / f"seed-{name}-{kind}").write_bytes(data)
    print(f"{len(codecs) * 3} seeds in each of {', '.join(TARGETS)}")


if __name__ == "__main__":
    main()
