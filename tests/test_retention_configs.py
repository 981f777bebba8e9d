"""Topic configs that work live (AlterConfigs, IncrementalAlterConfigs,
DescribeConfigs), retention by time and size, DeleteRecords and
OFFSET_OUT_OF_RANGE, LogAppendTime, and refusing to start on a damaged log,
driven by confluent-kafka (librdkafka) admin/consumer, kafkajs and kcat."""

import os
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, ResourceType)

import clients

# Small producer batches, so 16 KiB segments roll between appends.
SMALL_BATCHES = {"batch.num.messages": 4}
SMALL_SEGMENTS = {"FJORD_LOG_SEGMENT_BYTES": "16384", "FJORD_LOG_RETENTION_CHECK_INTERVAL_MS": "200"}


def topic_configs(bootstrap, topic):
    """{name: ConfigEntry} from DescribeConfigs (confluent)."""
    res = ConfigResource(ResourceType.TOPIC, topic)
    out = clients.admin_results(bootstrap, "describe_configs", [res])
    err, entries = next(iter(out.values()))
    assert err is None, err
    return entries


def alter(bootstrap, topic, configs, incremental=False, validate_only=False):
    """AlterConfigs (or Incremental with a list of ConfigEntry) on one topic; returns the KafkaError or None."""
    if incremental:
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=configs)
        method = "incremental_alter_configs"
    else:
        res = ConfigResource(ResourceType.TOPIC, topic, set_config=configs)
        method = "alter_configs"
    a = clients.admin(bootstrap)
    futs = getattr(a, method)([res], request_timeout=20, validate_only=validate_only)
    try:
        next(iter(futs.values())).result(timeout=20)
        return None
    except KafkaException as e:
        return e.args[0]


def partition_dir(b, topic, partition=0):
    base = b.data_dir / "kafka" / topic
    matches = [p for p in base.iterdir() if p.name.startswith(f"{partition}-")]
    assert len(matches) == 1, matches
    return matches[0]


def segment_files(b, topic, partition=0):
    return sorted(partition_dir(b, topic, partition).glob("*.log"))


def earliest(bootstrap, topic, partition=0):
    return clients.watermarks(bootstrap, topic, partition)[0]


def wait_for(pred, timeout_s=20, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def records(n, size=1000, ts=None, start=0):
    return [{"value": f"{start + i:08d}".encode() + b"x" * (size - 8), "timestamp": ts} for i in range(n)]


# ------------------------------------------------------------------ configs


def test_alter_configs_replaces_overrides_and_describe_shows_them(broker, topic_name):
    """AlterConfigs sets overrides that DescribeConfigs reports as DYNAMIC_TOPIC_CONFIG, and a second call replaces the whole set (unnamed overrides fall back to defaults), as in Kafka."""
    clients.create_topic(broker.bootstrap, topic_name)
    assert alter(broker.bootstrap, topic_name, {"retention.ms": "123456", "segment.bytes": "2097152"}) is None
    entries = topic_configs(broker.bootstrap, topic_name)
    assert entries["retention.ms"].value == "123456"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["segment.bytes"].value == "2097152"
    assert alter(broker.bootstrap, topic_name, {"max.message.bytes": "500000"}) is None
    entries = topic_configs(broker.bootstrap, topic_name)
    assert entries["max.message.bytes"].value == "500000"
    assert entries["retention.ms"].value == "604800000"
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["segment.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_alter_configs_errors_and_validate_only(broker, topic_name):
    """Bad values are INVALID_CONFIG, unknown topics UNKNOWN_TOPIC_OR_PARTITION, broker resources INVALID_REQUEST, and validate_only changes nothing."""
    clients.create_topic(broker.bootstrap, topic_name)
    err = alter(broker.bootstrap, topic_name, {"retention.ms": "-7"})
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
    err = alter(broker.bootstrap, topic_name, {"segment.bytes": "100"})
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
    err = alter(broker.bootstrap, topic_name, {"no.such.config": "1"})
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err
    err = alter(broker.bootstrap, topic_name + "-missing", {"retention.ms": "1000"})
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err
    assert alter(broker.bootstrap, topic_name, {"retention.ms": "5000"}, validate_only=True) is None
    assert topic_configs(broker.bootstrap, topic_name)["retention.ms"].value == "604800000"
    a = clients.admin(broker.bootstrap)
    fut = a.alter_configs([ConfigResource(ResourceType.BROKER, "1", set_config={"log.retention.ms": "1"})],
                          request_timeout=20)
    with pytest.raises(KafkaException) as e:
        next(iter(fut.values())).result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST


def test_incremental_alter_configs_set_delete_append_subtract(broker, topic_name):
    """IncrementalAlterConfigs SET/DELETE change single keys and APPEND/SUBTRACT edit cleanup.policy from its default; APPEND on a non-list config is INVALID_CONFIG."""
    clients.create_topic(broker.bootstrap, topic_name, config={"retention.bytes": "1048576"})
    ops = [ConfigEntry("retention.ms", "99999", incremental_operation=AlterConfigOpType.SET),
           ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
           ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)]
    assert alter(broker.bootstrap, topic_name, ops, incremental=True) is None
    entries = topic_configs(broker.bootstrap, topic_name)
    assert entries["retention.ms"].value == "99999"
    assert entries["retention.bytes"].value == "-1"
    assert entries["cleanup.policy"].value == "delete,compact"
    ops = [ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)]
    assert alter(broker.bootstrap, topic_name, ops, incremental=True) is None
    entries = topic_configs(broker.bootstrap, topic_name)
    assert entries["cleanup.policy"].value == "compact"
    assert entries["retention.ms"].value == "99999", "incremental keeps other overrides"
    ops = [ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)]
    err = alter(broker.bootstrap, topic_name, ops, incremental=True)
    assert err is not None and err.code() == KafkaError.INVALID_CONFIG, err


def test_kafkajs_alter_configs_then_describe(broker, topic_name):
    """kafkajs admin.alterConfigs (AlterConfigs) changes a topic config that kafkajs describeConfigs then reads back."""
    clients.create_topic(broker.bootstrap, topic_name)
    clients.js_ok("alterConfigs", broker.bootstrap, resources=[
        {"type": 2, "name": topic_name, "configEntries": [{"name": "retention.ms", "value": "7777777"}]}])
    res = clients.js_ok("describeConfigs", broker.bootstrap, resources=[
        {"type": 2, "name": topic_name, "configNames": ["retention.ms"]}])
    entries = res["resources"][0]["configEntries"]
    assert [(e["configName"], e["configValue"]) for e in entries] == [("retention.ms", "7777777")]
    reply = clients.js("alterConfigs", broker.bootstrap, resources=[
        {"type": 2, "name": topic_name, "configEntries": [{"name": "retention.ms", "value": "x"}]}])
    assert not reply["ok"] and "INVALID_CONFIG" in str(reply["error"]).upper().replace(" ", "_") or \
        "Invalid value" in str(reply["error"]), reply


# ---------------------------------------------------------------- retention


def test_time_retention_deletes_old_segments_and_moves_log_start(broker_factory, topic_name):
    """With 16 KiB segments, records stamped an hour ago are deleted by retention.ms=10min (whole segments, files gone, earliest offset moves) while recent records all stay readable."""
    b = broker_factory(shards=1, env=SMALL_SEGMENTS)
    clients.create_topic(b.bootstrap, topic_name)
    hour_ago = int(time.time() * 1000) - 3600_000
    clients.produce_all(b.bootstrap, topic_name, records(100, ts=hour_ago), **SMALL_BATCHES)
    clients.produce_all(b.bootstrap, topic_name, records(30, start=100), **SMALL_BATCHES)
    before = len(segment_files(b, topic_name))
    assert before >= 6, before
    assert alter(b.bootstrap, topic_name, {"retention.ms": "600000"}) is None
    start = wait_for(lambda: earliest(b.bootstrap, topic_name) or None, what="log start to move")
    assert 0 < start <= 100
    assert len(segment_files(b, topic_name)) < before
    got = clients.consume(b.bootstrap, topic_name, offset=OFFSET_BEGINNING, **{"auto.offset.reset": "earliest"})
    assert got[0]["offset"] <= start and got[-1]["offset"] == 129
    assert [int(m["value"][:8]) for m in got if m["offset"] >= 100] == list(range(100, 130))


def test_time_retention_can_expire_everything_and_offsets_continue(broker_factory, topic_name):
    """When every record is older than retention.ms the active segment is rolled and deleted too: the log is empty at its old end offset, a restart keeps that offset, and new records continue from it."""
    b = broker_factory(shards=1, env=SMALL_SEGMENTS)
    clients.create_topic(b.bootstrap, topic_name)
    clients.produce_all(b.bootstrap, topic_name, records(40, ts=int(time.time() * 1000) - 3600_000))
    assert alter(b.bootstrap, topic_name, {"retention.ms": "60000"}) is None
    wait_for(lambda: earliest(b.bootstrap, topic_name) == 40, what="all records to expire")
    assert clients.watermarks(b.bootstrap, topic_name) == (40, 40)
    b.kill9()
    b.start()
    assert clients.watermarks(b.bootstrap, topic_name) == (40, 40)
    assert clients.produce_all(b.bootstrap, topic_name, records(1)) == [(0, 40)]


def test_size_retention_keeps_at_least_retention_bytes(broker_factory, topic_name):
    """retention.bytes=64 KiB with 16 KiB segments deletes the oldest segments of a ~200 KiB log but keeps at least 64 KiB of the newest records."""
    b = broker_factory(shards=1, env=SMALL_SEGMENTS)
    clients.create_topic(b.bootstrap, topic_name, config={"retention.bytes": "65536"})
    clients.produce_all(b.bootstrap, topic_name, records(200), **SMALL_BATCHES)
    start = wait_for(lambda: earliest(b.bootstrap, topic_name) or None, what="size retention")
    time.sleep(1)  # a few more passes: it must be stable
    start = earliest(b.bootstrap, topic_name)
    kept = sum(p.stat().st_size for p in segment_files(b, topic_name))
    assert kept >= 65536, kept
    assert kept < 65536 + 3 * 16384, kept
    got = clients.consume(b.bootstrap, topic_name, offset=start)
    assert [m["offset"] for m in got] == list(range(start, 200))


# ------------------------------------------------------------ DeleteRecords


def test_delete_records_then_out_of_range_and_auto_offset_reset(broker, topic_name):
    """DeleteRecords (confluent) moves the low watermark; ListOffsets earliest returns it, a fetch below it is OFFSET_OUT_OF_RANGE (auto.offset.reset=error surfaces it), auto.offset.reset=earliest follows to the new start, and a kill -9 restart keeps it."""
    clients.create_topic(broker.bootstrap, topic_name)
    clients.produce_all(broker.bootstrap, topic_name, records(50, size=100))
    out = clients.admin_results(broker.bootstrap, "delete_records", [TopicPartition(topic_name, 0, 20)])
    err, deleted = next(iter(out.values()))
    assert err is None, err
    assert deleted.low_watermark == 20
    assert clients.watermarks(broker.bootstrap, topic_name) == (20, 50)
    c = clients.consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic_name, 0, 5)])
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline and seen is None:
            m = c.poll(0.5)
            if m is not None and m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                seen = m.error()
            elif m is not None and not m.error():
                raise AssertionError(f"read offset {m.offset()} below the log start")
        assert seen is not None and seen.code() == KafkaError._AUTO_OFFSET_RESET, seen
    finally:
        c.close()
    got = clients.consume(broker.bootstrap, topic_name, offset=5, **{"auto.offset.reset": "earliest"})
    assert [m["offset"] for m in got] == list(range(20, 50))
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    out = clients.admin_results(broker.bootstrap, "delete_records", [TopicPartition(topic_name, 0, 51)])
    err, _ = next(iter(out.values()))
    assert err is not None and err.code() == KafkaError.OFFSET_OUT_OF_RANGE, err
    broker.kill9()
    broker.start()
    assert clients.watermarks(broker.bootstrap, topic_name) == (20, 50)
    assert clients.produce_all(broker.bootstrap, topic_name, records(1)) == [(0, 50)]


def test_kafkajs_delete_topic_records_whole_partition(broker, topic_name):
    """kafkajs deleteTopicRecords with offset -1 deletes up to the high watermark; kafkajs fetchTopicOffsets then reports low == high."""
    clients.create_topic(broker.bootstrap, topic_name, partitions=2)
    clients.produce_all(broker.bootstrap, topic_name, [dict(r, partition=i % 2) for i, r in enumerate(records(20, size=50))])
    clients.js_ok("deleteTopicRecords", broker.bootstrap, topic=topic_name,
                  partitions=[{"partition": 0, "offset": "-1"}, {"partition": 1, "offset": "4"}])
    offsets = {o["partition"]: o for o in clients.js_ok("fetchTopicOffsets", broker.bootstrap, topic=topic_name)}
    assert offsets[0]["low"] == offsets[0]["high"] == "10"
    assert (offsets[1]["low"], offsets[1]["high"]) == ("4", "10")


# ------------------------------------------------------- timestamps, configs


def test_log_append_time_is_what_consumers_see(broker, topic_name):
    """With message.timestamp.type=LogAppendTime the broker stamps batches (uncompressed and zstd) with its clock: consumers (confluent and kcat) see LogAppendTime timestamps near now, not the producer's."""
    clients.create_topic(broker.bootstrap, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    clients.produce_all(broker.bootstrap, topic_name, records(5, size=50, ts=1000))
    clients.produce_all(broker.bootstrap, topic_name, records(5, size=50, ts=2000, start=5), **{"compression.type": "zstd"})
    after = int(time.time() * 1000)
    got = clients.consume(broker.bootstrap, topic_name, count=10)
    for m in got:
        assert m["timestamp_type"] == 2, m  # TIMESTAMP_LOG_APPEND_TIME
        assert before - 5000 <= m["timestamp"] <= after + 5000, m
    out = clients.kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e", "-f", "%T\n")
    stamps = [int(x) for x in out.stdout.decode().split()]
    assert len(stamps) == 10 and all(before - 5000 <= s <= after + 5000 for s in stamps), stamps


def test_live_segment_bytes_change_applies_without_restart(broker_factory, topic_name):
    """Raising segment.bytes with AlterConfigs on a live topic stops the 16 KiB rolls at once: 160 KiB more data lands in at most one new segment."""
    b = broker_factory(shards=1, env=SMALL_SEGMENTS)
    clients.create_topic(b.bootstrap, topic_name)
    clients.produce_all(b.bootstrap, topic_name, records(64), **SMALL_BATCHES)
    rolled = len(segment_files(b, topic_name))
    assert rolled >= 4, rolled
    assert alter(b.bootstrap, topic_name, {"segment.bytes": "1048576"}) is None
    clients.produce_all(b.bootstrap, topic_name, records(160, start=64), **SMALL_BATCHES)
    assert len(segment_files(b, topic_name)) <= rolled + 1


def test_broker_retention_default_applies_to_topics_without_overrides(broker_factory, topic_name):
    """log.retention.ms from the environment (FJORD_LOG_RETENTION_MS) is the retention of a topic without overrides: hour-old records go."""
    b = broker_factory(shards=1, env=dict(SMALL_SEGMENTS, FJORD_LOG_RETENTION_MS="60000"))
    clients.create_topic(b.bootstrap, topic_name)
    clients.produce_all(b.bootstrap, topic_name, records(40, ts=int(time.time() * 1000) - 3600_000))
    wait_for(lambda: earliest(b.bootstrap, topic_name) == 40, what="broker-default retention")


# ------------------------------------------------------------ damaged logs


def test_broker_refuses_to_start_on_a_damaged_sealed_segment(broker_factory, topic_name):
    """A byte flipped inside a sealed segment (indexes removed so it is rescanned) makes `fjord serve` exit non-zero naming the file, instead of serving without the partition."""
    b = broker_factory(shards=1, env=SMALL_SEGMENTS)
    clients.create_topic(b.bootstrap, topic_name)
    clients.produce_all(b.bootstrap, topic_name, records(64), **SMALL_BATCHES)
    b.stop()
    files = segment_files(b, topic_name)
    assert len(files) >= 3, files
    first = files[0]
    for ext in (".index", ".timeindex"):
        p = first.with_suffix(ext)
        if p.exists():
            p.unlink()
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    proc = subprocess.run(b.command(), env=dict(os.environ, **b.extra_env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode != 0, out[-2000:]
    assert first.name in out and "corrupt" in out.lower(), out[-2000:]


def test_min_insync_replicas_above_rf_refuses_acks_all_only(broker, topic_name):
    """min.insync.replicas=2 on a one-replica topic makes acks=all produce fail with NOT_ENOUGH_REPLICAS (as Kafka), while acks=1 still succeeds; lowering it live with AlterConfigs lets acks=all through."""
    clients.create_topic(broker.bootstrap, topic_name, config={"min.insync.replicas": "2"})
    p = clients.producer(broker.bootstrap, **{"acks": "all", "retries": 0})
    report = {}
    p.produce(topic_name, value=b"x", on_delivery=lambda err, msg: report.update(err=err))
    p.flush(30)
    assert report["err"] is not None and report["err"].code() == KafkaError.NOT_ENOUGH_REPLICAS, report
    assert clients.produce_all(broker.bootstrap, topic_name, [{"value": b"one"}], acks=1) == [(0, 0)]
    assert alter(broker.bootstrap, topic_name, {"min.insync.replicas": "1"}) is None
    assert clients.produce_all(broker.bootstrap, topic_name, [{"value": b"all"}], acks="all") == [(0, 1)]


def test_log_append_time_is_in_the_produce_response(broker, topic_name):
    """On a LogAppendTime topic the produce response carries the broker's append time, so librdkafka's delivery reports show it (timestamp type LogAppendTime), as with Kafka."""
    from confluent_kafka import Producer, TIMESTAMP_LOG_APPEND_TIME
    clients.create_topic(broker.bootstrap, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    reports = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(3):
        p.produce(topic_name, value=b"v%d" % i, timestamp=1000 + i,
                  on_delivery=lambda err, msg: reports.append((err, msg.timestamp())))
    assert p.flush(30) == 0
    after = int(time.time() * 1000)
    assert len(reports) == 3
    for err, (ts_type, ts) in reports:
        assert err is None, err
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, (ts_type, ts)
        assert before - 5000 <= ts <= after + 5000, ts
