"""Produce with every acks level and codec from confluent-kafka, kcat and kafkajs,
and read everything back byte-exact with confluent-kafka, kcat and kafkajs."""

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

import clients
import kafkawire
from clients import b64, consume, create_topic, js, js_ok, kcat, kcat_consume_exact, kcat_consume_json, produce_all, unb64

BASE_TS = 1_700_000_000_000
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def sample_records(n=30, partition=None):
    """Records that exercise binary values, null/empty keys and values, headers
    (including a null header value and repeated keys) and explicit timestamps."""
    recs = []
    for i in range(n):
        value = bytes((i + j) % 256 for j in range(i * 7))  # 0..203 bytes, all byte values
        if i == 3:
            value = None  # tombstone
        elif i == 4:
            value = b""
        key = None if i % 5 == 0 else b"key-%d\x00\xff" % i
        headers = [("h1", b"v%d" % i), ("bin", bytes([0, 255, i % 256])), ("h1", b"again")]
        if i == 6:
            headers = [("null-value", None)]
        elif i == 7:
            headers = []
        recs.append({"key": key, "value": value, "headers": headers,
                     "timestamp": BASE_TS + i * 1000, "partition": partition})
    recs.append({"key": b"big", "value": bytes(range(256)) * 400, "headers": [], "timestamp": BASE_TS + n * 1000,
                 "partition": partition})
    return recs


def assert_records_equal(got, sent, first_offset=0):
    assert [m["offset"] for m in got] == list(range(first_offset, first_offset + len(sent))), \
        "offsets not contiguous from %d: %s" % (first_offset, [m["offset"] for m in got][:20])
    for m, r in zip(got, sent):
        where = "offset %d" % m["offset"]
        assert m["key"] == r["key"], where
        assert m["value"] == r["value"], where
        assert [(k, v) for k, v in m["headers"]] == [(k, v) for k, v in r["headers"]], where
        assert m["timestamp_type"] == TIMESTAMP_CREATE_TIME, where
        assert m["timestamp"] == r["timestamp"], where


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_confluent_produce_each_acks_then_consume_byte_exact(broker, topic_name, acks):
    """Records produced by confluent-kafka with acks=0/1/all (keys, headers, timestamps, null/empty/binary values) come back byte-exact at offsets 0..n-1."""
    create_topic(broker.bootstrap, topic_name)
    sent = sample_records(partition=0)
    delivered = produce_all(broker.bootstrap, topic_name, sent, acks=acks)
    if acks != "0":
        assert [o for _, o in delivered] == list(range(len(sent)))
    got = consume(broker.bootstrap, topic_name, count=len(sent))
    assert_records_equal(got, sent)
    assert clients.watermarks(broker.bootstrap, topic_name) == (0, len(sent))


def test_produce_to_many_partitions_spread_over_shards(any_broker, topic_name):
    """Records produced to 6 partitions (over 1 or 2 shards) land in their partitions with per-partition offsets from 0."""
    create_topic(any_broker.bootstrap, topic_name, partitions=6)
    sent = []
    for i in range(60):
        sent.append({"partition": i % 6, "key": b"k%d" % i, "value": b"v%d" % i, "headers": [], "timestamp": BASE_TS + i})
    delivered = produce_all(any_broker.bootstrap, topic_name, sent, acks="all")
    for p in range(6):
        assert sorted(o for part, o in delivered if part == p) == list(range(10))
        want = [r for r in sent if r["partition"] == p]
        got = consume(any_broker.bootstrap, topic_name, partition=p)
        assert_records_equal(got, want)


# librdkafka only compresses with LZ4 when the broker advertises FindCoordinator v0
# (its LZ4 feature check): served since consumer groups (issue 3).
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_confluent_compressed_batches_round_trip_and_are_stored_compressed(broker, topic_name, codec):
    """A confluent-kafka producer with compression.type=<codec> is read back byte-exact by confluent and kcat, and a raw Fetch shows the batches still carry that codec (stored as-is)."""
    create_topic(broker.bootstrap, topic_name)
    sent = sample_records(n=40, partition=0)
    produce_all(broker.bootstrap, topic_name, sent, acks="all", **{"compression.type": codec, "linger.ms": 50})
    assert_records_equal(consume(broker.bootstrap, topic_name, count=len(sent)), sent)
    exact = kcat_consume_exact(broker.bootstrap, topic_name)
    assert exact == [(i, r["key"], r["value"]) for i, r in enumerate(sent)]
    with kafkawire.RawConnection("127.0.0.1", broker.kafka_port) as c:
        c.send(kafkawire.fetch_v4(11, topic_name, 0, 0))
        err, hw, records = kafkawire.parse_fetch_v4_response(c.recv_response(11))[(topic_name, 0)]
    assert err == 0 and hw == len(sent)
    batches = kafkawire.parse_record_batches(records)
    assert batches, "fetch returned no batches"
    assert all(b["magic"] == 2 and b["crc_ok"] for b in batches), batches
    # librdkafka sends a batch uncompressed when compressing would enlarge it
    # (say, a lone small first record): the broker stores what arrives.
    assert {b["compression"] for b in batches} <= {0, CODECS[codec]}, batches
    in_codec = sum(b["last_offset_delta"] + 1 for b in batches if b["compression"] == CODECS[codec])
    assert in_codec > len(sent) // 2, batches
    # batches tile the offsets with no gap
    expect = 0
    for b in batches:
        assert b["base_offset"] == expect, batches
        expect += b["last_offset_delta"] + 1


@pytest.mark.parametrize("acks,codec", [("0", "none"), ("1", "gzip"), ("all", "snappy"),
                                        ("all", "lz4"), ("-1", "zstd")])
def test_kcat_produce_with_acks_and_compression_then_kcat_and_confluent_consume(broker, topic_name, acks, codec):
    """kcat -P with -X acks=<n> -z <codec>, keys and headers, is read back exactly by kcat -J and by confluent-kafka."""
    create_topic(broker.bootstrap, topic_name)
    n = 25
    lines = b"".join(b"key%d:value-%d-%s\n" % (i, i, b"x" * i) for i in range(n))
    kcat("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", "0", "-K:", "-H", "src=kcat", "-H", "n=1",
         "-X", f"acks={acks}", "-z", codec, "-X", "linger.ms=20", input_bytes=lines)
    got = consume(broker.bootstrap, topic_name, count=n)
    assert [(m["offset"], m["key"], m["value"]) for m in got] == \
        [(i, b"key%d" % i, b"value-%d-%s" % (i, b"x" * i)) for i in range(n)]
    assert all(m["headers"] == [("src", b"kcat"), ("n", b"1")] for m in got), got[0]["headers"]
    js_msgs = kcat_consume_json(broker.bootstrap, topic_name)
    assert [(m["offset"], m["key"], m["payload"]) for m in js_msgs] == \
        [(i, "key%d" % i, "value-%d-%s" % (i, "x" * i)) for i in range(n)]
    assert js_msgs[0]["headers"] == ["src", "kcat", "n", "1"]


def test_kcat_consume_offsets_beginning_n_end_and_relative(broker, topic_name):
    """kcat -C honours -o beginning, -o N, -o end and -o -N (relative to end), stopping at end with -e."""
    create_topic(broker.bootstrap, topic_name)
    sent = [{"key": b"k%d" % i, "value": b"v%d" % i, "headers": [], "timestamp": BASE_TS + i} for i in range(20)]
    produce_all(broker.bootstrap, topic_name, sent)
    assert [o for o, _, _ in kcat_consume_exact(broker.bootstrap, topic_name, offset="beginning")] == list(range(20))
    assert kcat_consume_exact(broker.bootstrap, topic_name, offset="7") == [(i, b"k%d" % i, b"v%d" % i) for i in range(7, 20)]
    assert kcat_consume_exact(broker.bootstrap, topic_name, offset="end") == []
    assert [o for o, _, _ in kcat_consume_exact(broker.bootstrap, topic_name, offset="-3")] == [17, 18, 19]
    js_msgs = kcat_consume_json(broker.bootstrap, topic_name, offset="beginning")
    assert [m["ts"] for m in js_msgs] == [BASE_TS + i for i in range(20)]
    assert all(m["tstype"] == "create" for m in js_msgs)


def test_confluent_consume_from_middle_offset(broker, topic_name):
    """A confluent consumer assigned at offset N gets exactly offsets N.. end."""
    create_topic(broker.bootstrap, topic_name)
    sent = [{"value": b"v%d" % i} for i in range(15)]
    produce_all(broker.bootstrap, topic_name, sent)
    got = consume(broker.bootstrap, topic_name, offset=9)
    assert [(m["offset"], m["value"]) for m in got] == [(i, b"v%d" % i) for i in range(9, 15)]


@pytest.mark.parametrize("acks", [-1, 1, 0])
def test_kafkajs_produce_each_acks_read_back_by_confluent(broker, topic_name, acks):
    """kafkajs producer.send with acks -1/1/0 (keys, headers, timestamps) stores records read back byte-exact by confluent-kafka."""
    create_topic(broker.bootstrap, topic_name)
    msgs = [{"key": b64(b"jk%d" % i), "value": b64(bytes([i, 0, 255]) * i), "partition": 0,
             "timestamp": BASE_TS + i, "headers": {"h": b64(b"hv%d" % i)}} for i in range(12)]
    res = js_ok("produce", broker.bootstrap, topic=topic_name, acks=acks, messages=msgs)
    if acks != 0:
        assert [(r["partition"], r["errorCode"], r["baseOffset"]) for r in res] == [(0, 0, "0")], res
    got = consume(broker.bootstrap, topic_name, count=len(msgs))
    assert [m["offset"] for m in got] == list(range(12))
    for i, m in enumerate(got):
        assert m["key"] == b"jk%d" % i
        assert m["value"] == bytes([i, 0, 255]) * i
        assert m["headers"] == [("h", b"hv%d" % i)]
        assert m["timestamp"] == BASE_TS + i


def test_kafkajs_gzip_produce_and_second_batch_offsets(broker, topic_name):
    """Two kafkajs gzip sends get base offsets 0 and n, and all records read back by confluent and kcat."""
    create_topic(broker.bootstrap, topic_name)
    first = [{"value": b64(b"gz-a-%d" % i), "partition": 0} for i in range(10)]
    second = [{"value": b64(b"gz-b-%d" % i), "partition": 0} for i in range(5)]
    r1 = js_ok("produce", broker.bootstrap, topic=topic_name, compression="gzip", messages=first)
    r2 = js_ok("produce", broker.bootstrap, topic=topic_name, compression="gzip", messages=second)
    assert r1[0]["baseOffset"] == "0" and r2[0]["baseOffset"] == "10", (r1, r2)
    want = [b"gz-a-%d" % i for i in range(10)] + [b"gz-b-%d" % i for i in range(5)]
    assert [m["value"] for m in consume(broker.bootstrap, topic_name, count=15)] == want
    assert [v for _, _, v in kcat_consume_exact(broker.bootstrap, topic_name)] == want


def test_kafkajs_low_level_fetch_reads_confluent_records(any_broker, topic_name):
    """kafkajs' own Fetch path (broker.fetch, no group) reads confluent-produced records byte-exact from offset 0 and from a middle offset."""
    create_topic(any_broker.bootstrap, topic_name)
    sent = sample_records(n=20, partition=0)
    produce_all(any_broker.bootstrap, topic_name, sent, **{"compression.type": "gzip"})
    res = js_ok("fetch", any_broker.bootstrap, topic=topic_name, partition=0, offset=0)
    assert res["errorCode"] == 0
    got = res["records"]
    assert [int(m["offset"]) for m in got] == list(range(len(sent)))
    for m, r in zip(got, sent):
        assert unb64(m["key"]) == r["key"]
        # kafkajs decodes a null value as null and an empty one as an empty buffer
        assert unb64(m["value"]) == r["value"]
        assert int(m["timestamp"]) == r["timestamp"]
    res = js_ok("fetch", any_broker.bootstrap, topic=topic_name, partition=0, offset=15)
    assert [int(m["offset"]) for m in res["records"]] == list(range(15, len(sent)))


def test_concurrent_producers_on_many_partitions(any_broker, topic_name):
    """Four producers in parallel threads, each on its own partition of an 8-partition topic (acks=all), get contiguous offsets and every record back in order."""
    import threading
    create_topic(any_broker.bootstrap, topic_name, partitions=8)
    results = {}
    errors = []

    def run(p):
        try:
            recs = [{"partition": p, "value": b"p%d-%05d" % (p, i)} for i in range(500)]
            results[p] = produce_all(any_broker.bootstrap, topic_name, recs, acks="all")
        except Exception as e:  # collected and asserted below
            errors.append((p, e))

    threads = [threading.Thread(target=run, args=(p,)) for p in (0, 3, 5, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for p in (0, 3, 5, 7):
        assert [o for _, o in results[p]] == list(range(500))
        got = consume(any_broker.bootstrap, topic_name, partition=p)
        assert [m["value"] for m in got] == [b"p%d-%05d" % (p, i) for i in range(500)]


def test_near_limit_record_round_trips(broker, topic_name):
    """A single 900 KiB record (under the 1 MiB message.max.bytes) is stored and read back byte-exact by confluent and kcat."""
    create_topic(broker.bootstrap, topic_name)
    value = bytes((i * 31) % 251 for i in range(900 * 1024))
    assert produce_all(broker.bootstrap, topic_name, [{"key": b"big", "value": value}], acks="all") == [(0, 0)]
    assert consume(broker.bootstrap, topic_name)[0]["value"] == value
    assert kcat_consume_exact(broker.bootstrap, topic_name) == [(0, b"big", value)]


def test_kafkajs_produce_to_many_partitions_and_fetch_each(any_broker, topic_name):
    """One kafkajs send to 4 partitions (over 1 or 2 shards) returns a base offset per partition, and kafkajs' Fetch reads each partition back."""
    create_topic(any_broker.bootstrap, topic_name, partitions=4)
    msgs = [{"value": b64(b"m%d" % i), "partition": i % 4} for i in range(40)]
    res = js_ok("produce", any_broker.bootstrap, topic=topic_name, acks=-1, messages=msgs)
    assert sorted((r["partition"], r["errorCode"], r["baseOffset"]) for r in res) == [(p, 0, "0") for p in range(4)]
    for p in range(4):
        got = js_ok("fetch", any_broker.bootstrap, topic=topic_name, partition=p, offset=0)["records"]
        assert [(int(m["offset"]), unb64(m["value"])) for m in got] == \
            [(k, b"m%d" % i) for k, i in enumerate(range(p, 40, 4))]
