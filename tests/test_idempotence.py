"""Idempotent producers (issue 5, first half): InitProducerId, duplicate batches
answered with their original offsets, sequence gaps and stale epochs refused,
producer state surviving kill -9, and real idempotent clients (librdkafka,
kafkajs) keeping order with 5 requests in flight and across a broker crash."""

import struct
import subprocess
import sys
import time

import kafkawire as kw
from clients import TESTS_DIR, b64, consume, create_topic, js_ok, produce_all, unb64, watermarks

API_INIT_PRODUCER_ID = 22
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
INVALID_REQUEST = 42
INVALID_RECORD = 87


def init_producer_id_v0(correlation_id, transactional_id=None, timeout_ms=60000):
    body = kw.string(transactional_id) + kw.i32(timeout_ms)
    return kw.frame(kw.request_header_v1(API_INIT_PRODUCER_ID, 0, correlation_id) + body)


def init_producer_id(port, transactional_id=None):
    """-> (error_code, producer_id, epoch) over a fresh connection."""
    with kw.RawConnection("127.0.0.1", port) as c:
        c.send(init_producer_id_v0(1, transactional_id))
        r = kw.Reader(c.recv_response(1))
        r.i32()  # throttle
        return r.i16(), r.i64(), r.i16()


def idempotent_batch(values, producer_id, epoch, sequence):
    """An uncompressed v2 batch of `values` carrying a producer id, epoch and base sequence."""
    b = bytearray(kw.record_batch([(None, v) for v in values]))
    struct.pack_into(">qhi", b, 43, producer_id, epoch, sequence)
    struct.pack_into(">I", b, 17, kw.crc32c(bytes(b[21:])))
    return bytes(b)


def produce(conn, correlation_id, topic, blob):
    """-> (error_code, base_offset) of a Produce v3 acks=all on partition 0."""
    conn.send(kw.produce_v3(correlation_id, topic, 0, blob, acks=-1))
    return kw.parse_produce_v3_response(conn.recv_response(correlation_id))[(topic, 0)]


def stored_batches(port, topic):
    """(producer id, epoch, base sequence, record count) of each stored batch of partition 0 (raw Fetch)."""
    with kw.RawConnection("127.0.0.1", port) as c:
        c.send(kw.fetch_v4(1, topic, 0, 0, max_wait_ms=100))
        err, _hw, records = kw.parse_fetch_v4_response(c.recv_response(1))[(topic, 0)]
        assert err == 0
    out = []
    pos = 0
    while pos + 61 <= len(records):
        (length,) = struct.unpack_from(">i", records, pos + 8)
        pid, epoch, seq, count = struct.unpack_from(">qhii", records, pos + 43)
        out.append((pid, epoch, seq, count))
        pos += 12 + length
    return out


def assert_one_producer_in_sequence(batches):
    """All batches from one producer id and epoch, sequences 0, 1, 2 ... without gap or repeat."""
    assert batches, "no batches stored"
    assert len({(pid, epoch) for pid, epoch, _, _ in batches}) == 1, batches[:5]
    assert batches[0][0] >= 0, "batches carry no producer id"
    expected = 0
    for _pid, _epoch, seq, count in batches:
        assert seq == expected, f"batch at sequence {seq}, expected {expected}"
        expected += count


def test_init_producer_id_unique_across_shards_and_kill9(broker_factory):
    """InitProducerId gives epoch 0 and ids never handed out before, across connections on 2 shards and a kill -9 restart; a transactional id gets an id and a new epoch on each init (test_transactions.py covers the rest), an empty one INVALID_REQUEST."""
    b = broker_factory(shards=2)
    first = [init_producer_id(b.kafka_port) for _ in range(8)]
    assert all(err == 0 and pid >= 0 and epoch == 0 for err, pid, epoch in first), first
    b.restart(hard=True)
    second = [init_producer_id(b.kafka_port) for _ in range(8)]
    assert all(err == 0 and pid >= 0 and epoch == 0 for err, pid, epoch in second), second
    ids = [pid for _, pid, _ in first + second]
    assert len(set(ids)) == len(ids), f"producer ids reused: {ids}"
    err, pid, epoch = init_producer_id(b.kafka_port, "my-txn")
    assert (err, epoch) == (0, 0) and pid not in ids
    assert init_producer_id(b.kafka_port, "my-txn") == (0, pid, 1)
    assert init_producer_id(b.kafka_port, "")[0] == INVALID_REQUEST


def test_duplicates_gaps_and_epochs_on_the_wire_survive_kill9(broker, topic_name):
    """A resent batch gets its original offset and is stored once; a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, a stale epoch INVALID_PRODUCER_EPOCH, two idempotent batches in one request INVALID_RECORD; after kill -9 the rebuilt state still answers a resend with its original offset."""
    create_topic(broker.bootstrap, topic_name)
    err, pid, epoch = init_producer_id(broker.kafka_port)
    assert err == 0
    b0 = idempotent_batch([b"a0", b"a1", b"a2"], pid, epoch, 0)
    b1 = idempotent_batch([b"b0", b"b1"], pid, epoch, 3)
    with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
        assert produce(c, 1, topic_name, b0) == (0, 0)
        assert produce(c, 2, topic_name, b1) == (0, 3)
        assert produce(c, 3, topic_name, b0) == (0, 0), "duplicate of the first batch"
        assert produce(c, 4, topic_name, b1) == (0, 3), "duplicate of the last batch"
        gap = idempotent_batch([b"gap"], pid, epoch, 6)
        assert produce(c, 5, topic_name, gap)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        repeat = idempotent_batch([b"rep"], pid, epoch, 4)
        assert produce(c, 6, topic_name, repeat)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        two = idempotent_batch([b"x"], pid, epoch, 5) + idempotent_batch([b"y"], pid, epoch, 6)
        assert produce(c, 7, topic_name, two)[0] == INVALID_RECORD
        assert produce(c, 8, topic_name, idempotent_batch([b"c0"], pid, epoch, 5)) == (0, 5)
    assert watermarks(broker.bootstrap, topic_name)[1] == 6

    broker.restart(hard=True)
    with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
        assert produce(c, 1, topic_name, b1) == (0, 3), "duplicate after kill -9"
        assert produce(c, 2, topic_name, idempotent_batch([b"late"], pid, epoch, 9))[0] == \
            OUT_OF_ORDER_SEQUENCE_NUMBER
        # A new epoch starts again at sequence 0; the old epoch is then fenced.
        assert produce(c, 3, topic_name, idempotent_batch([b"e1"], pid, epoch + 1, 0)) == (0, 6)
        assert produce(c, 4, topic_name, idempotent_batch([b"old"], pid, epoch, 6))[0] == INVALID_PRODUCER_EPOCH
    values = [m["value"] for m in consume(broker.bootstrap, topic_name)]
    assert values == [b"a0", b"a1", b"a2", b"b0", b"b1", b"c0", b"e1"]


def test_confluent_idempotent_in_order_with_five_in_flight(any_broker, topic_name):
    """librdkafka with enable.idempotence=true and 5 requests in flight: 3000 records in many small batches land once each, in order, in batches that carry its producer id."""
    create_topic(any_broker.bootstrap, topic_name)
    records = [{"value": b"m-%05d" % i, "partition": 0} for i in range(3000)]
    acks = produce_all(any_broker.bootstrap, topic_name, records, acks="all", **{
        "enable.idempotence": True, "max.in.flight.requests.per.connection": 5,
        "linger.ms": 0, "batch.num.messages": 10})
    assert [o for _, o in acks] == list(range(3000))
    assert [m["value"] for m in consume(any_broker.bootstrap, topic_name)] == [r["value"] for r in records]
    assert_one_producer_in_sequence(stored_batches(any_broker.kafka_port, topic_name))


def test_kafkajs_idempotent_concurrent_sends_keep_order(any_broker, topic_name):
    """kafkajs with idempotent: true and 10 concurrent sends (5 in flight): every record is stored once, each send's records contiguous and in order, and the stored batches follow the producer's sequence without gap or repeat."""
    create_topic(any_broker.bootstrap, topic_name)
    sends = [[b64(b"s%02d-%03d" % (s, i)) for i in range(50)] for s in range(10)]
    result = js_ok("produceIdempotent", any_broker.bootstrap, topic=topic_name, sends=sends,
                   maxInFlightRequests=5)
    assert len(result) == 10
    stored = [m["value"] for m in consume(any_broker.bootstrap, topic_name)]
    assert sorted(stored) == sorted(unb64(v) for s in sends for v in s), "records lost or duplicated"
    for s in sends:
        first = stored.index(unb64(s[0]))
        assert stored[first:first + len(s)] == [unb64(v) for v in s], "a send's records are not contiguous"
    assert_one_producer_in_sequence(stored_batches(any_broker.kafka_port, topic_name))


def read_acks(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        offset, value = line.split(b" ", 1)
        out.append((int(offset), value))
    return out


def test_kill9_mid_stream_idempotent_producer_stores_each_record_once_in_order(broker_factory, topic_name, tmp_path):
    """An idempotent librdkafka producer keeps sending while the broker is killed with -9 and restarted: it delivers all 4000 records, and the log holds each exactly once, in production order, at the acknowledged offsets."""
    b = broker_factory(shards=2)
    create_topic(b.bootstrap, topic_name)
    ack_file = tmp_path / "acks.txt"
    count = 4000
    proc = subprocess.Popen([sys.executable, str(TESTS_DIR / "idempotent_producer.py"), b.bootstrap, topic_name,
                             str(ack_file), str(count)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "producer.log", "wb"))
    try:
        deadline = time.monotonic() + 60
        while len(read_acks(ack_file)) < 800:
            assert proc.poll() is None, f"producer exited early: {(tmp_path / 'producer.log').read_text()}"
            assert time.monotonic() < deadline, "producer made no progress"
            time.sleep(0.02)
        b.kill9()
        acked_before = len(read_acks(ack_file))
        time.sleep(1.0)  # the producer keeps queueing and retrying meanwhile
        b.start()
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert code == 0, f"producer failed: {(tmp_path / 'producer.log').read_text()[-2000:]}"
    acks = read_acks(ack_file)
    assert acked_before < count, "the broker was killed after the stream ended; the test proved nothing"
    assert len(acks) == count and len({v for _, v in acks}) == count
    log = consume(b.bootstrap, topic_name, timeout_s=60)
    values = [m["value"] for m in log]
    assert len(values) == len(set(values)), \
        f"{len(values) - len(set(values))} duplicates, first {[v for v in values if values.count(v) > 1][:5]}"
    assert values == [b"v-%08d" % i for i in range(count)], "log is not the production sequence exactly once"
    by_offset = {m["offset"]: m["value"] for m in log}
    wrong = [(o, v) for o, v in acks if by_offset.get(o) != v]
    assert not wrong, f"acknowledged offsets that hold other records: {wrong[:5]}"


def test_non_idempotent_producers_are_unaffected(broker, topic_name):
    """Plain batches (producer id -1) are never deduplicated: the same raw batch sent twice is stored twice."""
    create_topic(broker.bootstrap, topic_name)
    blob = kw.record_batch([(b"k", b"same")])
    with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
        assert produce(c, 1, topic_name, blob) == (0, 0)
        assert produce(c, 2, topic_name, blob) == (0, 1)


def test_producer_state_snapshots_at_roll_and_close_serve_recovery(broker_factory, topic_name):
    """With 1 KiB segments, idempotent appends leave `.snapshot` files at segment rolls (and one at clean close); after kill -9 and after SIGTERM the rebuilt state still answers a resend of each of the last batches with its original offset and refuses a gap."""
    broker = broker_factory(env={"FJORD_LOG_SEGMENT_BYTES": "1024", "FJORD_LOG": "debug"})
    create_topic(broker.bootstrap, topic_name)
    err, pid, epoch = init_producer_id(broker.kafka_port)
    assert err == 0
    sent = []
    with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
        for i in range(40):
            blob = idempotent_batch([b"r%03d-%s" % (i, b"x" * 100)], pid, epoch, i)
            assert produce(c, i, topic_name, blob) == (0, i)
            sent.append(blob)
    part_dir = next((broker.data_dir / "kafka" / topic_name).iterdir())
    assert len(list(part_dir.glob("*.log"))) > 5, "segments did not roll"
    assert list(part_dir.glob("*.snapshot")), "no snapshot written at a roll"

    for restart in ("kill9", "sigterm"):
        broker.restart(hard=(restart == "kill9"))
        with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
            for i in range(35, 40):
                assert produce(c, i, topic_name, sent[i]) == (0, i), f"resend of {i} after {restart}"
            gap = idempotent_batch([b"gap"], pid, epoch, 41)
            assert produce(c, 99, topic_name, gap)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        recovered = [l for l in broker.log_tail().splitlines() if "producer state recovered" in l]
        assert recovered and "snapshot=Some(" in recovered[-1], recovered[-1:]
        scanned = int(recovered[-1].split("batches=")[1].split()[0])
        assert scanned < 40, f"recovery after {restart} scanned {scanned} batches: the snapshot was not used"
    assert (part_dir / ("%020d.snapshot" % 40)).exists(), "no snapshot at the log end after a clean close"
    assert watermarks(broker.bootstrap, topic_name)[1] == 40
