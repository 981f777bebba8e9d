"""Hand-encoded Kafka wire frames for the black-box tests that must send what no
well-behaved client sends (bad CRC, wrong magic, oversized lengths, unknown API
keys and versions).

Everything here is written from the Kafka protocol spec with `struct`; nothing
talks to the broker except `RawConnection`. CRC32C is pure Python (table-driven)
so the suite needs no C extension.
"""

import socket
import struct
import time

# ---------------------------------------------------------------- CRC32C

_CRC32C_POLY_REFLECTED = 0x82F63B78


def _make_crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as used by RecordBatch v2."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC32C self-check failed"

# ---------------------------------------------------------------- primitives


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    """Non-flexible (int16-length) nullable string."""
    if s is None:
        return i16(-1)
    b = s.encode() if isinstance(s, str) else s
    return i16(len(b)) + b


def bytes_field(b):
    """Non-flexible (int32-length) nullable bytes."""
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items):
    return i32(len(items)) + b"".join(items)


def uvarint(v):
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v):
    """Zig-zag signed varint (also used for varlong)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s):
    """Flexible-version string (uvarint length + 1); None encodes as a null compact string."""
    if s is None:
        return uvarint(0)
    b = s.encode() if isinstance(s, str) else s
    return uvarint(len(b) + 1) + b


def compact_bytes(b):
    """Flexible-version nullable bytes (uvarint length + 1)."""
    if b is None:
        return uvarint(0)
    return uvarint(len(b) + 1) + b


def compact_array(items):
    """Flexible-version array of already encoded items (uvarint count + 1)."""
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = b"\x00"  # an empty tagged-field section


class Reader:
    """Cursor over a response body; raises struct.error/IndexError on short input."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"short read: need {size} at {self.pos}, have {len(self.data)}")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def raw(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short read")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self):
        n = self.i16()
        return None if n < 0 else self.raw(n).decode()

    def bytes_field(self):
        n = self.i32()
        return None if n < 0 else self.raw(n)

    def array(self, read_item):
        n = self.i32()
        return [] if n < 0 else [read_item(self) for _ in range(n)]

    def uvarint(self):
        shift = 0
        result = 0
        while True:
            b = self.raw(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self):
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.raw(n - 1).decode()

    def compact_array(self, read_item):
        n = self.uvarint()
        return None if n == 0 else [read_item(self) for _ in range(n - 1)]

    def tagged_fields(self):
        """A tagged-field section -> {tag: raw bytes}."""
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self.raw(self.uvarint())
        return out


# ---------------------------------------------------------------- headers and frames

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18
API_OFFSET_FETCH = 9
API_FIND_COORDINATOR = 10
API_CREATE_TOPICS = 19
API_DELETE_TOPICS = 20
API_ALTER_CONFIGS = 33
API_INCREMENTAL_ALTER_CONFIGS = 44
API_CREATE_PARTITIONS = 37


def request_header_v1(api_key, api_version, correlation_id, client_id="fjord-raw-test"):
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def request_header_v2(api_key, api_version, correlation_id, client_id="fjord-raw-test"):
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


# ---------------------------------------------------------------- RecordBatch v2


def encode_record(offset_delta, timestamp_delta, key, value, headers=()):
    body = i8(0) + varint(timestamp_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        hk = hk.encode()
        body += varint(len(hk)) + hk
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + body


def record_batch(records, base_timestamp=None, magic=2, corrupt_crc=False, attributes=0):
    """An uncompressed RecordBatch v2 of (key, value) pairs with a correct CRC32C
    unless `corrupt_crc`; `magic` can be set to a wrong value to test rejection."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    encoded = b"".join(
        encode_record(i, 0, k, v) for i, (k, v) in enumerate(records)
    )
    # Fields covered by the CRC: attributes .. end.
    after_crc = (
        i16(attributes)
        + i32(len(records) - 1)        # lastOffsetDelta
        + i64(base_timestamp)          # baseTimestamp
        + i64(base_timestamp)          # maxTimestamp
        + i64(-1)                      # producerId
        + i16(-1)                      # producerEpoch
        + i32(-1)                      # baseSequence
        + i32(len(records))            # records count
        + encoded
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    after_length = i32(-1) + i8(magic) + struct.pack(">I", crc) + after_crc
    return i64(0) + i32(len(after_length)) + after_length


def parse_record_batches(data: bytes):
    """Parse the batch headers of a records blob: list of dicts with base_offset,
    magic, attributes, record_count, last_offset_delta; a partial trailing batch
    (allowed in Fetch responses) is ignored."""
    batches = []
    pos = 0
    while pos + 61 <= len(data):
        base_offset, batch_length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + batch_length
        if end > len(data):
            break
        magic = data[pos + 16]
        (crc,) = struct.unpack_from(">I", data, pos + 17)
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        (last_offset_delta,) = struct.unpack_from(">i", data, pos + 23)
        (record_count,) = struct.unpack_from(">i", data, pos + 57)
        batches.append(dict(
            base_offset=base_offset,
            magic=magic,
            crc_ok=crc32c(data[pos + 21:end]) == crc,
            attributes=attributes,
            compression=attributes & 0x7,
            last_offset_delta=last_offset_delta,
            record_count=record_count,
        ))
        pos = end
    return batches


# ---------------------------------------------------------------- requests


def produce_v3(correlation_id, topic, partition, records_blob, acks=-1, timeout_ms=10000):
    body = (
        string(None)          # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + bytes_field(records_blob)])])
    )
    return frame(request_header_v1(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_v3_response(body: bytes):
    """-> {(topic, partition): (error_code, base_offset)}"""
    r = Reader(body)
    out = {}

    def partition(rr):
        return rr.i32(), rr.i16(), rr.i64(), rr.i64()

    def topic(rr):
        name = rr.string()
        for index, err, base, _log_append in rr.array(partition):
            out[(name, index)] = (err, base)

    r.array(topic)
    r.i32()  # throttle_time_ms
    return out


def produce_v10(correlation_id, topic, partition, records_blob, acks=-1, timeout_ms=10000, transactional_id=None):
    """Produce v10 (flexible: request header v2, compact strings/arrays, tagged
    fields; v10 is the first with KIP-951's leader hints in the response)."""
    body = (
        compact_string(transactional_id)
        + i16(acks)
        + i32(timeout_ms)
        + compact_array([compact_string(topic)
                         + compact_array([i32(partition) + compact_bytes(records_blob) + NO_TAGS])
                         + NO_TAGS])
        + NO_TAGS
    )
    return frame(request_header_v2(API_PRODUCE, 10, correlation_id) + body)


def parse_produce_v10_response(body: bytes):
    """A Produce v10 response body (after the v1 response header) ->
    {"partitions": {(topic, partition): {"error", "base_offset", "error_message",
     "current_leader": (leader_id, leader_epoch) or None}},
     "throttle_time_ms", "node_endpoints": {node_id: (host, port, rack)} or None}.
    current_leader is the partition's tagged field 0, node_endpoints the
    response's tagged field 0 (KIP-951)."""
    r = Reader(body)
    parts = {}

    def partition(rr):
        index = rr.i32()
        p = {"error": rr.i16(), "base_offset": rr.i64()}
        rr.i64()  # log_append_time_ms
        rr.i64()  # log_start_offset
        p["record_errors"] = rr.compact_array(lambda x: (x.i32(), x.compact_string(), x.tagged_fields())[:2])
        p["error_message"] = rr.compact_string()
        tags = rr.tagged_fields()
        p["current_leader"] = None
        if 0 in tags:
            t = Reader(tags[0])
            p["current_leader"] = (t.i32(), t.i32())
            t.tagged_fields()
        p["other_tags"] = sorted(k for k in tags if k != 0)
        return index, p

    def topic(rr):
        name = rr.compact_string()
        for index, p in rr.compact_array(partition):
            parts[(name, index)] = p
        rr.tagged_fields()

    r.compact_array(topic)
    throttle = r.i32()
    tags = r.tagged_fields()
    endpoints = None
    if 0 in tags:
        t = Reader(tags[0])

        def endpoint(x):
            node, host, port, rack = x.i32(), x.compact_string(), x.i32(), x.compact_string()
            x.tagged_fields()
            return node, (host, port, rack)
        endpoints = dict(t.compact_array(endpoint))
    if r.pos != len(body):
        raise ValueError(f"{len(body) - r.pos} trailing bytes after a Produce v10 response")
    return {"partitions": parts, "throttle_time_ms": throttle, "node_endpoints": endpoints}


def metadata_v4(correlation_id, topics, allow_auto_topic_creation):
    body = array([string(t) for t in topics]) + (b"\x01" if allow_auto_topic_creation else b"\x00")
    return frame(request_header_v1(API_METADATA, 4, correlation_id) + body)


def parse_metadata_v4_response(body: bytes):
    """-> {topic: (error_code, [partition indexes])}"""
    r = Reader(body)
    r.i32()  # throttle
    r.array(lambda rr: (rr.i32(), rr.string(), rr.i32(), rr.string()))
    r.string()  # cluster id
    r.i32()  # controller id

    def partition(rr):
        err = rr.i16()
        idx = rr.i32()
        rr.i32()  # leader
        rr.array(lambda x: x.i32())
        rr.array(lambda x: x.i32())
        return idx

    def topic(rr):
        err = rr.i16()
        name = rr.string()
        rr.i8()  # is_internal
        parts = rr.array(partition)
        return name, (err, sorted(parts))

    return dict(r.array(topic))


def parse_metadata_v4_full(body: bytes):
    """Everything in a Metadata v4 response:
    {"brokers": {node_id: (host, port, rack)}, "cluster_id", "controller_id",
     "topics": {name: {"error", "internal", "partitions": {index: {"error", "leader", "replicas", "isr"}}}}}"""
    r = Reader(body)
    r.i32()  # throttle
    brokers = {nid: (host, port, rack)
               for nid, host, port, rack in r.array(lambda rr: (rr.i32(), rr.string(), rr.i32(), rr.string()))}
    cluster_id = r.string()
    controller_id = r.i32()

    def partition(rr):
        err = rr.i16()
        idx = rr.i32()
        leader = rr.i32()
        replicas = rr.array(lambda x: x.i32())
        isr = rr.array(lambda x: x.i32())
        return idx, {"error": err, "leader": leader, "replicas": replicas, "isr": isr}

    def topic(rr):
        err = rr.i16()
        name = rr.string()
        internal = rr.i8() != 0
        parts = dict(rr.array(partition))
        return name, {"error": err, "internal": internal, "partitions": parts}

    topics = dict(r.array(topic))
    return {"brokers": brokers, "cluster_id": cluster_id, "controller_id": controller_id, "topics": topics}


def create_topics_v4(correlation_id, topics, timeout_ms=10000, validate_only=False):
    """CreateTopics v4 (the last non-flexible version). `topics`: list of
    (name, num_partitions, replication_factor, {config: value}) or
    (name, num_partitions, replication_factor, {config: value}, assignments)
    where `assignments` lists broker ids per partition ([[2, 3], [3, 1]] is
    partition 0 on 2 and 3, partition 1 on 3 and 1; Kafka wants partitions and
    replication factor -1 with it)."""
    items = []
    for name, partitions, rf, configs, *rest in topics:
        assignments = rest[0] if rest else []
        items.append(
            string(name) + i32(partitions) + i16(rf)
            + array([i32(index) + array([i32(b) for b in brokers]) for index, brokers in enumerate(assignments)])
            + array([string(k) + string(v) for k, v in (configs or {}).items()])
        )
    body = array(items) + i32(timeout_ms) + (b"\x01" if validate_only else b"\x00")
    return frame(request_header_v1(API_CREATE_TOPICS, 4, correlation_id) + body)


def parse_create_topics_v4_response(body: bytes):
    """-> {topic: (error_code, error_message)}"""
    r = Reader(body)
    r.i32()  # throttle
    return dict(r.array(lambda rr: (rr.string(), (rr.i16(), rr.string()))))


def delete_topics_v3(correlation_id, names, timeout_ms=10000):
    body = array([string(n) for n in names]) + i32(timeout_ms)
    return frame(request_header_v1(API_DELETE_TOPICS, 3, correlation_id) + body)


def parse_delete_topics_v3_response(body: bytes):
    """-> {topic: error_code}"""
    r = Reader(body)
    r.i32()  # throttle
    return dict(r.array(lambda rr: (rr.string(), rr.i16())))


def create_partitions_v1(correlation_id, topic, count, timeout_ms=10000, validate_only=False):
    body = (array([string(topic) + i32(count) + i32(-1)])  # assignments: null
            + i32(timeout_ms) + (b"\x01" if validate_only else b"\x00"))
    return frame(request_header_v1(API_CREATE_PARTITIONS, 1, correlation_id) + body)


def parse_create_partitions_v1_response(body: bytes):
    """-> {topic: (error_code, error_message)}"""
    r = Reader(body)
    r.i32()  # throttle
    return dict(r.array(lambda rr: (rr.string(), (rr.i16(), rr.string()))))


RESOURCE_TOPIC = 2


def alter_configs_v1(correlation_id, topic, configs, validate_only=False):
    """AlterConfigs v1 of one topic: `configs` replaces the topic's set configs."""
    body = (array([i8(RESOURCE_TOPIC) + string(topic)
                   + array([string(k) + string(v) for k, v in configs.items()])])
            + (b"\x01" if validate_only else b"\x00"))
    return frame(request_header_v1(API_ALTER_CONFIGS, 1, correlation_id) + body)


def incremental_alter_configs_v0(correlation_id, topic, ops, validate_only=False):
    """IncrementalAlterConfigs v0 of one topic: `ops` is a list of
    (name, operation, value), operation 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT.
    The response has AlterConfigs' layout (parse_alter_configs_v1_response)."""
    body = (array([i8(RESOURCE_TOPIC) + string(topic)
                   + array([string(k) + i8(op) + string(v) for k, op, v in ops])])
            + (b"\x01" if validate_only else b"\x00"))
    return frame(request_header_v1(API_INCREMENTAL_ALTER_CONFIGS, 0, correlation_id) + body)


def parse_alter_configs_v1_response(body: bytes):
    """-> {(resource_type, name): (error_code, error_message)}"""
    r = Reader(body)
    r.i32()  # throttle

    def item(rr):
        err = rr.i16()
        msg = rr.string()
        rtype = rr.i8()
        name = rr.string()
        return (rtype, name), (err, msg)

    return dict(r.array(item))


def find_coordinator_v1(correlation_id, key, key_type=0):
    body = string(key) + i8(key_type)
    return frame(request_header_v1(API_FIND_COORDINATOR, 1, correlation_id) + body)


def parse_find_coordinator_v1_response(body: bytes):
    """-> (error_code, node_id, host, port)"""
    r = Reader(body)
    r.i32()  # throttle
    err = r.i16()
    r.string()  # error message
    return err, r.i32(), r.string(), r.i32()


def offset_fetch_v3(correlation_id, group, topic, partitions):
    body = string(group) + array([string(topic) + array([i32(p) for p in partitions])])
    return frame(request_header_v1(API_OFFSET_FETCH, 3, correlation_id) + body)


def parse_offset_fetch_v3_response(body: bytes):
    """-> (top-level error_code, {(topic, partition): (committed_offset, error_code)})"""
    r = Reader(body)
    r.i32()  # throttle
    out = {}

    def topic(rr):
        name = rr.string()
        for idx, off, err in rr.array(lambda x: (x.i32(), x.i64(), (x.string(), x.i16())[1])):
            out[(name, idx)] = (off, err)

    r.array(topic)
    return r.i16(), out


def fetch_v4(correlation_id, topic, partition, offset, max_wait_ms=500, min_bytes=1,
             max_bytes=16 * 1024 * 1024):
    body = (
        i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0)
        + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])])
    )
    return frame(request_header_v1(API_FETCH, 4, correlation_id) + body)


def parse_fetch_v4_response(body: bytes):
    """-> {(topic, partition): (error_code, high_watermark, records_bytes)}"""
    r = Reader(body)
    r.i32()  # throttle
    out = {}

    def partition(rr):
        idx = rr.i32()
        err = rr.i16()
        hw = rr.i64()
        rr.i64()  # last stable offset
        rr.array(lambda x: (x.i64(), x.i64()))  # aborted txns (nullable array)
        records = rr.bytes_field()
        return idx, err, hw, records or b""

    def topic(rr):
        name = rr.string()
        for idx, err, hw, records in rr.array(partition):
            out[(name, idx)] = (err, hw, records)

    r.array(topic)
    return out


def api_versions(correlation_id, version, flexible=None):
    """ApiVersions at any version. Versions >= 3 use header v2 and a flexible body
    (client software name/version), which is also what a client sends at an
    unknown future version (KIP-511)."""
    if flexible is None:
        flexible = version >= 3
    if flexible:
        body = compact_string("fjord-raw-test") + compact_string("0.1") + uvarint(0)
        return frame(request_header_v2(API_API_VERSIONS, version, correlation_id) + body)
    return frame(request_header_v1(API_API_VERSIONS, version, correlation_id))


def parse_api_versions_v0_response(body: bytes):
    """-> (error_code, {api_key: (min, max)})"""
    r = Reader(body)
    err = r.i16()
    keys = r.array(lambda rr: (rr.i16(), rr.i16(), rr.i16()))
    return err, {k: (lo, hi) for k, lo, hi in keys}


# ---------------------------------------------------------------- connection


class ConnectionClosed(Exception):
    pass


class RawConnection:
    """One TCP connection that sends raw frames and reads v0-header responses."""

    def __init__(self, host, port, timeout_s=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.settimeout(timeout_s)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ConnectionClosed(str(e)) from e
            if not chunk:
                raise ConnectionClosed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_response(self, expected_correlation_id, header_tagged_fields=False):
        """Read one response frame; returns its body (after the response header)."""
        (length,) = struct.unpack(">i", self._recv_exact(4))
        if length < 4 or length > 200 * 1024 * 1024:
            raise ValueError(f"implausible response length {length}")
        payload = self._recv_exact(length)
        (corr,) = struct.unpack_from(">i", payload, 0)
        if corr != expected_correlation_id:
            raise ValueError(f"correlation id {corr} != expected {expected_correlation_id}")
        pos = 4
        if header_tagged_fields:
            r = Reader(payload[4:])
            n = r.uvarint()
            for _ in range(n):
                r.uvarint()
                r.raw(r.uvarint())
            pos += r.pos
        return payload[pos:]

    def wait_closed(self, timeout_s=10.0):
        """True if the peer closes (EOF or reset) within timeout_s; any bytes
        received meanwhile are returned as the second element."""
        deadline = time.monotonic() + timeout_s
        received = b""
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, received
            except (ConnectionResetError, BrokenPipeError):
                return True, received
            if not chunk:
                return True, received
            received += chunk
        return False, received
