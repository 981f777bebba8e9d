"""Logs that span many segments: reads from any offset, by timestamp, and across
restarts, with small segments (FJORD_LOG_SEGMENT_BYTES) so the older data is
served from sealed segment files rather than from the tail cache."""

import pytest
from confluent_kafka import TopicPartition

import clients
from clients import consume, consumer, create_topic, kcat_consume_exact, produce_all

SEGMENT_BYTES = 16 * 1024
N = 1500
BASE_TS = 1_700_000_000_000


def value(i):
    return b"seg-%06d-" % i + bytes((i + j) % 256 for j in range(100))


@pytest.fixture(params=[1, 2], ids=["1shard", "2shards"])
def small_segments(request, broker_factory, topic_name):
    """A broker with 16 KiB segments and a topic holding N records in many segments."""
    b = broker_factory(shards=request.param, env={"FJORD_LOG_SEGMENT_BYTES": str(SEGMENT_BYTES)})
    create_topic(b.bootstrap, topic_name, partitions=2)
    recs = [{"partition": 1, "key": b"k%d" % i, "value": value(i), "timestamp": BASE_TS + i * 10}
            for i in range(N)]
    # several produce calls, so batches are small and the log rolls often
    for start in range(0, N, 250):
        produce_all(b.bootstrap, topic_name, recs[start:start + 250], acks="all", **{"linger.ms": 0})
    return b, topic_name


def segment_files(b):
    return sorted(p for p in b.data_dir.rglob("*.log") if p.is_file())


def assert_full_log(b, topic):
    got = consume(b.bootstrap, topic, partition=1, timeout_s=60)
    assert [m["offset"] for m in got] == list(range(N))
    bad = [m["offset"] for m in got if m["value"] != value(m["offset"]) or m["key"] != b"k%d" % m["offset"]]
    assert not bad, f"records with wrong content at offsets {bad[:10]}"


def test_log_rolls_into_many_segments_and_reads_back_from_anywhere(small_segments):
    """With 16 KiB segments, ~200 KiB of records roll into many segment files and can be read from offset 0, from the middle of an old segment, and near the end."""
    b, topic = small_segments
    files = [p for p in segment_files(b) if "controller" not in str(p)]
    assert len(files) >= 5, f"expected many segments with segment bytes {SEGMENT_BYTES}, found {files}"
    assert_full_log(b, topic)
    for start in (1, 333, 777, N - 1):
        got = consume(b.bootstrap, topic, partition=1, offset=start, count=min(20, N - start))
        assert [m["offset"] for m in got] == list(range(start, start + len(got)))
        assert all(m["value"] == value(m["offset"]) for m in got)
    assert [o for o, _, _ in kcat_consume_exact(b.bootstrap, topic, partition=1, offset="500")] == list(range(500, N))


def test_offsets_for_times_across_segments(small_segments):
    """offsets_for_times finds the right offset in old and new segments."""
    b, topic = small_segments
    c = consumer(b.bootstrap)
    try:
        for i in (0, 10, 555, 1234, N - 1):
            res = c.offsets_for_times([TopicPartition(topic, 1, BASE_TS + i * 10)], timeout=10)
            assert res[0].error is None and res[0].offset == i, (i, res[0])
            res = c.offsets_for_times([TopicPartition(topic, 1, BASE_TS + i * 10 - 5)], timeout=10)
            assert res[0].offset == i, (i, "between", res[0])
    finally:
        c.close()
    assert clients.watermarks(b.bootstrap, topic, 1) == (0, N)


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "kill9"])
def test_many_segments_survive_restart(small_segments, hard):
    """After a SIGTERM or kill -9 restart, every record of a many-segment log reads back and new records continue at N."""
    b, topic = small_segments
    b.restart(hard=hard)
    assert_full_log(b, topic)
    assert produce_all(b.bootstrap, topic, [{"partition": 1, "value": b"next"}], acks="all") == [(1, N)]
