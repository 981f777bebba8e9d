"""ListOffsets (earliest / latest / by timestamp) and Fetch long polling."""

import threading
import time

from confluent_kafka import OFFSET_END, TopicPartition

import clients
import kafkawire
from clients import consume, consumer, create_topic, js_ok, produce_all

BASE_TS = 1_700_000_000_000


def produce_timestamped(bootstrap, topic, n, partition=0):
    recs = [{"value": b"v%d" % i, "timestamp": BASE_TS + i * 1000, "partition": partition} for i in range(n)]
    return produce_all(bootstrap, topic, recs, acks="all")


def test_watermarks_empty_then_after_produce(any_broker, topic_name):
    """get_watermark_offsets is (0, 0) on an empty partition and (0, n) after n records."""
    create_topic(any_broker.bootstrap, topic_name, partitions=2)
    assert clients.watermarks(any_broker.bootstrap, topic_name, 0) == (0, 0)
    produce_timestamped(any_broker.bootstrap, topic_name, 17, partition=1)
    assert clients.watermarks(any_broker.bootstrap, topic_name, 1) == (0, 17)
    assert clients.watermarks(any_broker.bootstrap, topic_name, 0) == (0, 0)


def test_confluent_offsets_for_times(broker, topic_name):
    """offsets_for_times returns the first offset whose timestamp is >= the query, and -1 (end) past the last record."""
    create_topic(broker.bootstrap, topic_name)
    produce_timestamped(broker.bootstrap, topic_name, 10)
    c = consumer(broker.bootstrap)
    try:
        cases = {
            BASE_TS - 5000: 0,          # before everything -> first record
            BASE_TS: 0,
            BASE_TS + 5000: 5,          # exact match
            BASE_TS + 5500: 6,          # between 5 and 6 -> 6
            BASE_TS + 9000: 9,
            BASE_TS + 9001: OFFSET_END,  # after the last -> -1
        }
        for ts, want in cases.items():
            res = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=10)
            assert res[0].error is None, res[0].error
            assert res[0].offset == want, (ts - BASE_TS, res[0].offset, want)
    finally:
        c.close()


def test_raw_list_offsets_earliest_latest_over_kafkajs_and_confluent_agree(broker, topic_name):
    """kafkajs fetchTopicOffsets and confluent watermarks agree: low 0, high n, for every partition."""
    create_topic(broker.bootstrap, topic_name, partitions=3)
    for p, n in [(0, 4), (2, 9)]:
        produce_timestamped(broker.bootstrap, topic_name, n, partition=p)
    res = js_ok("fetchTopicOffsets", broker.bootstrap, topic=topic_name)
    got = sorted((r["partition"], r["low"], r["high"], r["offset"]) for r in res)
    assert got == [(0, "0", "4", "4"), (1, "0", "0", "0"), (2, "0", "9", "9")], got
    for p, n in [(0, 4), (1, 0), (2, 9)]:
        assert clients.watermarks(broker.bootstrap, topic_name, p) == (0, n)


def test_kafkajs_fetch_topic_offsets_by_timestamp(broker, topic_name):
    """kafkajs fetchTopicOffsetsByTimestamp finds the first offset at or after a timestamp."""
    create_topic(broker.bootstrap, topic_name)
    produce_timestamped(broker.bootstrap, topic_name, 10)
    for ts, want in [(BASE_TS - 1, "0"), (BASE_TS + 3000, "3"), (BASE_TS + 3001, "4"), (BASE_TS + 9000, "9")]:
        res = js_ok("fetchTopicOffsetsByTimestamp", broker.bootstrap, topic=topic_name, timestamp=ts)
        assert [(r["partition"], r["offset"]) for r in res] == [(0, want)], (ts - BASE_TS, res)
    # past the last record kafkajs substitutes the latest offset (it got -1 from the broker)
    res = js_ok("fetchTopicOffsetsByTimestamp", broker.bootstrap, topic=topic_name, timestamp=BASE_TS + 60000)
    assert [(r["partition"], r["offset"]) for r in res] == [(0, "10")], res


def test_consumer_waiting_at_end_gets_a_later_record_promptly(any_broker, topic_name):
    """A confluent consumer polling at the end of a partition, with fetch.wait.max.ms=30000, receives a record produced afterwards within 10 s (the append wakes the long poll)."""
    create_topic(any_broker.bootstrap, topic_name)
    produce_all(any_broker.bootstrap, topic_name, [{"value": b"before-%d" % i} for i in range(3)])
    c = consumer(any_broker.bootstrap, **{"fetch.wait.max.ms": 30000, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic_name, 0, 3)])
        assert c.poll(2.0) is None  # nothing beyond offset 3 yet; the fetch is now parked
        timer = threading.Timer(1.0, lambda: produce_all(any_broker.bootstrap, topic_name, [{"value": b"after"}]))
        timer.start()
        start = time.monotonic()
        got = None
        while time.monotonic() - start < 10.0:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got = m
                break
        timer.join()
        assert got is not None, "record produced while the consumer waited was not delivered within 10 s"
        assert (got.offset(), got.value()) == (3, b"after")
    finally:
        c.close()


def test_raw_fetch_long_poll_waits_then_wakes_on_append(broker, topic_name):
    """A raw Fetch at the end with max_wait 1000 ms and nothing new waits (returns empty after >= 0.5 s); one with max_wait 30000 returns the record appended 1 s later within 10 s."""
    create_topic(broker.bootstrap, topic_name)
    produce_all(broker.bootstrap, topic_name, [{"value": b"a"}])
    with kafkawire.RawConnection("127.0.0.1", broker.kafka_port, timeout_s=40) as c:
        t0 = time.monotonic()
        c.send(kafkawire.fetch_v4(1, topic_name, 0, 1, max_wait_ms=1000))
        err, hw, records = kafkawire.parse_fetch_v4_response(c.recv_response(1))[(topic_name, 0)]
        elapsed = time.monotonic() - t0
        assert (err, hw, records) == (0, 1, b"")
        assert elapsed >= 0.5, f"empty fetch with max_wait 1000 ms returned after {elapsed:.3f} s"

        timer = threading.Timer(1.0, lambda: produce_all(broker.bootstrap, topic_name, [{"value": b"b"}]))
        timer.start()
        t0 = time.monotonic()
        c.send(kafkawire.fetch_v4(2, topic_name, 0, 1, max_wait_ms=30000))
        err, hw, records = kafkawire.parse_fetch_v4_response(c.recv_response(2))[(topic_name, 0)]
        elapsed = time.monotonic() - t0
        timer.join()
        assert err == 0 and hw == 2
        batches = kafkawire.parse_record_batches(records)
        assert [b["base_offset"] for b in batches] == [1], batches
        assert elapsed < 10.0, f"long poll woke only after {elapsed:.1f} s"


def test_fetch_beyond_end_is_offset_out_of_range(broker, topic_name):
    """A raw Fetch at an offset past the high watermark answers OFFSET_OUT_OF_RANGE (1)."""
    create_topic(broker.bootstrap, topic_name)
    produce_all(broker.bootstrap, topic_name, [{"value": b"a"}, {"value": b"b"}])
    with kafkawire.RawConnection("127.0.0.1", broker.kafka_port) as c:
        c.send(kafkawire.fetch_v4(3, topic_name, 0, 50, max_wait_ms=100))
        err, _hw, records = kafkawire.parse_fetch_v4_response(c.recv_response(3))[(topic_name, 0)]
    assert err == 1 and records == b""
    assert [m["value"] for m in consume(broker.bootstrap, topic_name)] == [b"a", b"b"]
