"""Log compaction (cleanup.policy=compact and compact,delete) seen by real clients:
the latest value per key survives at its original offset, in offset order,
tombstones go only after delete.retention.ms, and __consumer_offsets is
compacted (its on-disk size stays bounded and committed offsets survive)."""

import json
import os
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourceType

import clients
import kafkawire as kw

SMALL = {
    "FJORD_LOG_SEGMENT_BYTES": "16384",
    "FJORD_LOG_CLEANER_BACKOFF_MS": "100",
    "FJORD_OFFSETS_TOPIC_NUM_PARTITIONS": "1",
}
COMPACT = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
SMALL_BATCHES = {"batch.num.messages": 4, "linger.ms": 0}


def wait_for(pred, timeout_s=30, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def keyed(keys, round_no, size=300):
    return [{"key": k, "value": f"{k.decode()}@{round_no}".encode().ljust(size, b".")} for k in keys]


def fillers(tag, n=60, size=300):
    """Unique keys that push earlier records out of the active segment."""
    return [{"key": f"fill-{tag}-{i}".encode(), "value": b"f" * size} for i in range(n)]


def produce(b, topic, recs):
    return clients.produce_all(b.bootstrap, topic, recs, acks="all", **SMALL_BATCHES)


def expected_latest(produced):
    """{key: (offset, value)} of the last record per key, from [(record, (partition, offset))]."""
    out = {}
    for rec, (_, off) in produced:
        out[rec["key"]] = (off, rec["value"])
    return out


def log_bytes(b, topic):
    return sum(p.stat().st_size for p in (b.data_dir / "kafka" / topic).glob("*/*.log"))


def check_exactly_latest(b, topic, latest):
    got = clients.consume(b.bootstrap, topic)
    offsets = [m["offset"] for m in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "offset order, no duplicates"
    seen = {m["key"]: (m["offset"], m["value"]) for m in got}
    assert len(seen) == len(got), "exactly one record per key"
    assert seen == latest
    return got


def test_compacted_topic_keeps_latest_value_per_key_in_offset_order(broker_factory, topic_name):
    # Proves that compaction removes every superseded value from sealed segments and keeps the latest at its original offset.
    b = broker_factory(env=SMALL)
    clients.create_topic(b.bootstrap, topic_name, config=COMPACT)
    keys = [f"key-{i:03d}".encode() for i in range(40)]
    produced = []
    for rnd in range(4):
        recs = keyed(keys, rnd)
        produced += list(zip(recs, produce(b, topic_name, recs)))
    recs = fillers("a")
    produced += list(zip(recs, produce(b, topic_name, recs)))
    payload = sum(len(r["key"]) + len(r["value"]) for r, _ in produced)
    latest = expected_latest(produced)
    end = produced[-1][1][1] + 1

    def compacted():
        got = clients.consume(b.bootstrap, topic_name)
        return len(got) == len(latest)

    wait_for(compacted, what="the cleaner to remove superseded values")
    got = check_exactly_latest(b, topic_name, latest)
    assert all(m["value"].startswith(m["key"] + b"@3") for m in got if m["key"].startswith(b"key-"))
    assert log_bytes(b, topic_name) < payload * 0.75, "superseded values left the disk"
    # The end offset never moves back, and new records continue from it.
    assert clients.watermarks(b.bootstrap, topic_name) == (0, end)
    more = produce(b, topic_name, [{"key": b"key-000", "value": b"after"}])
    assert more[0][1] == end
    # A read from an offset whose batch was removed starts at the next surviving record.
    gap = next(o for o in range(end) if o not in {m["offset"] for m in got})
    first = clients.consume(b.bootstrap, topic_name, offset=gap, count=1)[0]
    assert first["offset"] > gap
    # Still the same after a kill -9 and a restart (cleaned segments recovered, gaps allowed).
    # (The new key-000 sits in the active segment, so the old one stays until that segment is sealed and cleaned.)
    b.kill9()
    b.start()
    again = clients.consume(b.bootstrap, topic_name)
    assert [(m["offset"], m["key"], m["value"]) for m in again] == \
        [(m["offset"], m["key"], m["value"]) for m in got] + [(end, b"key-000", b"after")]


def test_tombstones_stay_for_delete_retention_then_go(broker_factory, topic_name):
    # Proves a tombstone hides older values at once, is itself delivered while younger than delete.retention.ms, and is removed later.
    b = broker_factory(env=SMALL)
    clients.create_topic(b.bootstrap, topic_name, config={**COMPACT, "delete.retention.ms": "4000"})
    keys = [f"t-{i:02d}".encode() for i in range(20)]
    produced = []
    recs = keyed(keys, 0)
    produced += list(zip(recs, produce(b, topic_name, recs)))
    dead = keys[:5]
    recs = [{"key": k, "value": None} for k in dead]
    produced += list(zip(recs, produce(b, topic_name, recs)))
    recs = fillers("a")
    produced += list(zip(recs, produce(b, topic_name, recs)))
    latest = expected_latest(produced)

    def values_gone():
        got = clients.consume(b.bootstrap, topic_name)
        return len(got) == len(latest)

    wait_for(values_gone, what="values under tombstones to be removed")
    got = check_exactly_latest(b, topic_name, latest)
    assert sum(1 for m in got if m["value"] is None) == len(dead), "tombstones still delivered"
    time.sleep(4.5)
    # New dirty segments make the cleaner take another pass, after delete.retention.ms.
    recs = fillers("b")
    produced += list(zip(recs, produce(b, topic_name, recs)))
    latest = {k: v for k, v in expected_latest(produced).items() if v[1] is not None}
    wait_for(lambda: not any(m["value"] is None for m in clients.consume(b.bootstrap, topic_name)),
             what="tombstones to be removed")
    check_exactly_latest(b, topic_name, latest)


def test_compact_delete_policy_compacts_and_retains_by_size(broker_factory, topic_name):
    # Proves cleanup.policy=compact,delete applies both: superseded values go and retention.bytes still deletes old segments.
    b = broker_factory(env={**SMALL, "FJORD_LOG_RETENTION_CHECK_INTERVAL_MS": "200"})
    clients.create_topic(b.bootstrap, topic_name,
                         config={**COMPACT, "cleanup.policy": "compact,delete", "retention.bytes": "12000"})
    keys = [f"cd-{i:02d}".encode() for i in range(20)]
    for rnd in range(6):
        produce(b, topic_name, keyed(keys, rnd))
    # Unique keys that compaction cannot remove and that exceed retention.bytes + one segment,
    # so retention must delete whatever way the cleaner merged the segments.
    produce(b, topic_name, fillers("a", n=140))

    def settled():
        keys_seen = [m["key"] for m in clients.consume(b.bootstrap, topic_name)]
        lo, _ = clients.watermarks(b.bootstrap, topic_name)
        # Retention moved the log start, kept no more than retention.bytes + one segment, and no key is there twice.
        last[:] = [lo, sorted((p.name, p.stat().st_size) for p in (b.data_dir / "kafka" / topic_name).glob("*/*.log")),
                   len(keys_seen) - len(set(keys_seen))]
        return lo > 0 and log_bytes(b, topic_name) <= 12000 + 16384 and len(keys_seen) == len(set(keys_seen))

    last = []
    try:
        wait_for(settled, what="retention.bytes and compaction to both apply")
    except AssertionError as e:
        raise AssertionError(f"{e}: log start, segments, duplicate keys: {last}")


def test_consumer_offsets_is_compacted(broker_factory, topic_name):
    # Proves __consumer_offsets (cleanup.policy=compact) shrinks under repeated commits and the latest commit survives kill -9.
    b = broker_factory(env=SMALL)
    clients.create_topic(b.bootstrap, topic_name)
    clients.produce_all(b.bootstrap, topic_name, [{"value": b"x"}])
    group = f"g-{topic_name}"
    c = clients.consumer(b.bootstrap, **{"group.id": group})
    try:
        for i in range(600):
            c.commit(offsets=[TopicPartition(topic_name, 0, i)], asynchronous=False)
    finally:
        c.close()
    # Each commit is a record of the same key: once cleaned, a few records remain.
    wait_for(lambda: log_bytes(b, "__consumer_offsets") < 20000, what="__consumer_offsets to be compacted")
    b.kill9()
    b.start()
    c = clients.consumer(b.bootstrap, **{"group.id": group})
    try:
        got = c.committed([TopicPartition(topic_name, 0)], timeout=20)
        assert got[0].offset == 599
    finally:
        c.close()


def test_describe_configs_shows_compaction_settings(broker, topic_name):
    # Proves the compaction configs set at creation are stored and described back.
    clients.create_topic(broker.bootstrap, topic_name,
                         config={**COMPACT, "delete.retention.ms": "1234", "min.compaction.lag.ms": "5",
                                 "max.compaction.lag.ms": "60000"})
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    err, entries = next(iter(clients.admin_results(broker.bootstrap, "describe_configs", [res]).values()))
    assert err is None
    assert entries["cleanup.policy"].value == "compact"
    assert entries["delete.retention.ms"].value == "1234"
    assert entries["min.compaction.lag.ms"].value == "5"
    assert entries["min.cleanable.dirty.ratio"].value == "0.01"
    assert entries["max.compaction.lag.ms"].value == "60000"


def segment_batches(b, topic):
    """Batch headers of every segment file of partition 0, oldest segment first."""
    out = []
    for p in sorted((b.data_dir / "kafka" / topic).glob("*/*.log")):
        out += [x for x in kw.parse_record_batches(p.read_bytes()) if x["magic"] == 2 and x["crc_ok"]]
    return out


def half_random(prefix, size=300):
    """A value librdkafka can compress (so it does) but not to nothing (so segments still fill)."""
    return prefix + os.urandom(size // 3) + b"." * (size // 2)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_lz4_and_zstd_batches_are_compacted(broker_factory, topic_name, codec):
    """Proves lz4 and zstd batches of a compacted topic are cleaned: only the latest value per key stays, at its offset, in order."""
    b = broker_factory(env=SMALL)
    clients.create_topic(b.bootstrap, topic_name, config=COMPACT)
    conf = {**SMALL_BATCHES, "batch.num.messages": 8, "compression.type": codec}
    keys = [f"key-{i:03d}".encode() for i in range(40)]
    produced = []
    # Rounds 0-2 supersede whole batches; round 3 holds every key and round 4 rewrites
    # only the even ones, so round 3's batches must be cut in half (a rewrite, not a drop).
    rounds = [keys] * 4 + [keys[::2]]
    for rnd, ks in enumerate(rounds):
        recs = [{"key": k, "value": half_random(f"{k.decode()}@{rnd}:".encode())} for k in ks]
        produced += list(zip(recs, clients.produce_all(b.bootstrap, topic_name, recs, acks="all", **conf)))
    recs = [{"key": f"fill-{i}".encode(), "value": half_random(b"f")} for i in range(250)]
    produced += list(zip(recs, clients.produce_all(b.bootstrap, topic_name, recs, acks="all", **conf)))
    code = {"lz4": 3, "zstd": 4}[codec]
    assert any(x["compression"] == code for x in segment_batches(b, topic_name)), f"the producer wrote {codec} batches"
    latest = expected_latest(produced)
    end = produced[-1][1][1] + 1
    wait_for(lambda: len(clients.consume(b.bootstrap, topic_name)) == len(latest),
             what=f"the cleaner to remove superseded values from {codec} batches")
    got = check_exactly_latest(b, topic_name, latest)
    for m in got:
        if m["key"].startswith(b"key-"):
            want = b"@4:" if int(m["key"][4:]) % 2 == 0 else b"@3:"
            assert want in m["value"], (m["key"], m["value"][:20])
    assert clients.watermarks(b.bootstrap, topic_name) == (0, end)
    # Cleaned batches are written back uncompressed; the rest stay as the producer sent them.
    after = segment_batches(b, topic_name)
    assert any(x["compression"] == 0 for x in after) and any(x["compression"] == code for x in after)
    b.kill9()
    b.start()
    again = clients.consume(b.bootstrap, topic_name)
    assert [(m["offset"], m["value"]) for m in again] == [(m["offset"], m["value"]) for m in got]


def produce_errors(bootstrap, topic, records, **conf):
    """Produce each (key, value) and return the delivery error codes (None for success), in order."""
    p = clients.producer(bootstrap, **{"retries": 0, **conf})
    errs = [None] * len(records)
    done = [False] * len(records)

    def cb(i):
        def on_delivery(err, _msg):
            errs[i] = None if err is None else err.code()
            done[i] = True
        return on_delivery

    for i, (k, v) in enumerate(records):
        p.produce(topic, key=k, value=v, on_delivery=cb(i))
        p.flush(20)
    assert all(done), "every record got a delivery report"
    return errs


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4", "zstd"])
def test_compacted_topic_refuses_records_without_key(broker, topic_name, codec):
    """Proves produce to a compacted topic answers INVALID_RECORD for a batch holding a keyless record (also compressed), as Kafka does."""
    clients.create_topic(broker.bootstrap, topic_name, config={"cleanup.policy": "compact"})
    errs = produce_errors(broker.bootstrap, topic_name,
                          [(b"k1", b"v" * 100), (None, b"v" * 100), (b"", b"empty key is a key" * 5), (b"k2", None)],
                          **{"compression.type": codec})
    assert errs == [None, KafkaError.INVALID_RECORD, None, None]
    got = clients.consume(broker.bootstrap, topic_name)
    assert [(m["offset"], m["key"]) for m in got] == [(0, b"k1"), (1, b""), (2, b"k2")]
    # A topic without compact takes keyless records; so does one switched back to delete.
    plain = topic_name + "-plain"
    clients.create_topic(broker.bootstrap, plain, config={"cleanup.policy": "delete"})
    assert produce_errors(broker.bootstrap, plain, [(None, b"x")], **{"compression.type": codec}) == [None]


def test_compacted_topic_refuses_keyless_records_from_kafkajs_and_raw_wire(broker, topic_name):
    """Proves kafkajs sees INVALID_RECORD for a keyless record on a compacted topic and a raw Produce v3 gets code 87 for that partition."""
    clients.create_topic(broker.bootstrap, topic_name, partitions=2, config={"cleanup.policy": "compact,delete"})
    reply = clients.js("produce", broker.bootstrap, topic=topic_name, compression="gzip",
                       messages=[{"value": clients.b64(b"no key"), "partition": 0}])
    assert not reply["ok"]
    assert reply["error"].get("type") == "INVALID_RECORD" or "INVALID_RECORD" in json.dumps(reply["error"]), reply["error"]
    ok = clients.js_ok("produce", broker.bootstrap, topic=topic_name,
                       messages=[{"key": clients.b64(b"k"), "value": clients.b64(b"keyed"), "partition": 0}])
    assert ok
    with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
        c.send(kw.produce_v3(7, topic_name, 1, kw.record_batch([(b"a", b"1"), (None, b"2")])))
        resp = kw.parse_produce_v3_response(c.recv_response(7))
    assert resp[(topic_name, 1)][0] == 87, resp
    assert clients.watermarks(broker.bootstrap, topic_name, partition=1) == (0, 0), "nothing of the refused batch was stored"


def test_max_compaction_lag_forces_cleaning_below_the_dirty_ratio(broker_factory, topic_name):
    """max.compaction.lag.ms set live (IncrementalAlterConfigs) makes the cleaner clean a log that min.cleanable.dirty.ratio=1.0 holds back, and DescribeConfigs shows it."""
    b = broker_factory(env=SMALL)
    clients.create_topic(b.bootstrap, topic_name, config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "1.0"})
    keys = [f"lag-{i:02d}".encode() for i in range(20)]
    produced = []
    for rnd in range(4):
        recs = keyed(keys, rnd)
        produced += list(zip(recs, produce(b, topic_name, recs)))
    recs = fillers("a")
    produced += list(zip(recs, produce(b, topic_name, recs)))
    latest = expected_latest(produced)
    # The cleaner runs every 100 ms (log.cleaner.backoff.ms); ratio 1.0 means "never by ratio", as in Kafka.
    time.sleep(2)
    assert len(clients.consume(b.bootstrap, topic_name)) == len(produced), "ratio 1.0 held compaction back"
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.compaction.lag.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    assert [e for e, _ in clients.admin_results(b.bootstrap, "incremental_alter_configs", [res]).values()] == [None]
    wait_for(lambda: len(clients.consume(b.bootstrap, topic_name)) == len(latest),
             what="max.compaction.lag.ms to force a pass")
    check_exactly_latest(b, topic_name, latest)
    err, entries = next(iter(clients.admin_results(b.bootstrap, "describe_configs",
                                                   [ConfigResource(ResourceType.TOPIC, topic_name)]).values()))
    assert err is None
    assert entries["max.compaction.lag.ms"].value == "1000"
    assert entries["max.compaction.lag.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_compaction_lag_broker_defaults_are_described(broker_factory, topic_name):
    """log.cleaner.max/min.compaction.lag.ms set on the broker are the topic defaults DescribeConfigs reports (STATIC_BROKER_CONFIG)."""
    b = broker_factory(env={"FJORD_LOG_CLEANER_MAX_COMPACTION_LAG_MS": "86400000",
                            "FJORD_LOG_CLEANER_MIN_COMPACTION_LAG_MS": "5"})
    clients.create_topic(b.bootstrap, topic_name, config={"cleanup.policy": "compact"})
    err, entries = next(iter(clients.admin_results(b.bootstrap, "describe_configs",
                                                   [ConfigResource(ResourceType.TOPIC, topic_name)]).values()))
    assert err is None
    assert (entries["max.compaction.lag.ms"].value, entries["min.compaction.lag.ms"].value) == ("86400000", "5")
    assert entries["max.compaction.lag.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value


def test_cleaner_removes_records_of_aborted_transactions(broker_factory, topic_name):
    """Records of an aborted transaction on a compacted topic are removed by the cleaner (read_uncommitted stops seeing them); committed ones stay at their offsets for both isolation levels and supersede older values of their keys."""
    b = broker_factory(env=SMALL)
    # Created with delete so nothing is cleaned before the first check; compact is set after.
    clients.create_topic(b.bootstrap, topic_name, config={**COMPACT, "cleanup.policy": "delete"})
    # Older non-transactional values of the keys the committed transaction writes.
    older = [{"key": b"cm-%02d" % i, "value": b"old" * 50} for i in range(20)]
    produce(b, topic_name, older)
    p = clients.producer(b.bootstrap, **{"transactional.id": f"tx-{topic_name}", "enable.idempotence": True})
    p.init_transactions(20)
    offsets = {}

    def report(err, msg):
        assert err is None, err
        offsets[msg.key()] = msg.offset()

    for commit, tag in [(False, b"ab"), (True, b"cm")]:
        p.begin_transaction()
        for i in range(20):
            p.produce(topic_name, key=b"%s-%02d" % (tag, i), value=tag * 150, on_delivery=report)
        p.flush(20)
        (p.commit_transaction if commit else p.abort_transaction)(20)
    produced = [({"key": k, "value": b"cm" * 150}, (0, o)) for k, o in offsets.items() if k.startswith(b"cm")]
    recs = fillers("a")
    produced += list(zip(recs, produce(b, topic_name, recs)))
    latest = expected_latest(produced)
    assert len(clients.consume(b.bootstrap, topic_name, **{"isolation.level": "read_uncommitted"})) == 120, \
        "before cleaning, read_uncommitted sees the aborted records too"
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    assert [e for e, _ in clients.admin_results(b.bootstrap, "incremental_alter_configs", [res]).values()] == [None]

    def cleaned():
        got = clients.consume(b.bootstrap, topic_name, **{"isolation.level": "read_uncommitted"})
        return not any(m["key"].startswith(b"ab-") or m["value"] == b"old" * 50 for m in got)

    wait_for(cleaned, what="the cleaner to remove the aborted records and the values the commit superseded")
    for isolation in ["read_uncommitted", "read_committed"]:
        got = clients.consume(b.bootstrap, topic_name, **{"isolation.level": isolation})
        assert {m["key"]: (m["offset"], m["value"]) for m in got} == latest, isolation
    # Still so after a restart (the markers stay, the transaction index is rebuilt or reloaded).
    b.kill9()
    b.start()
    got = clients.consume(b.bootstrap, topic_name, **{"isolation.level": "read_committed"})
    assert {m["key"]: (m["offset"], m["value"]) for m in got} == latest
