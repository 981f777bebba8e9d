"""Durability across restarts: SIGTERM and kill -9 keep every record; kill -9 in
the middle of an acks=all stream loses no acknowledged record."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clients
import kafkawire
from clients import consume, create_topic, produce_all

TESTS_DIR = Path(__file__).resolve().parent


def records(prefix, n):
    return [{"key": b"%s-k%d" % (prefix, i), "value": b"%s-v%d" % (prefix, i), "headers": [("i", b"%d" % i)],
             "timestamp": 1_700_000_000_000 + i} for i in range(n)]


def assert_log(bootstrap, topic, sent, partitions=1):
    for p in range(partitions):
        want = [r for i, r in enumerate(sent) if i % partitions == p]
        got = consume(bootstrap, topic, partition=p)
        assert [m["offset"] for m in got] == list(range(len(want))), f"partition {p} offsets"
        assert [(m["key"], m["value"], m["headers"], m["timestamp"]) for m in got] == \
            [(r["key"], r["value"], r["headers"], r["timestamp"]) for r in want], f"partition {p} content"


def test_sigterm_exits_zero_and_restart_keeps_records(any_broker, topic_name):
    """SIGTERM stops the broker with exit code 0; after a restart on the same data dir all records and topics are there and new offsets continue."""
    b = any_broker
    create_topic(b.bootstrap, topic_name, partitions=2)
    sent = [dict(r, partition=i % 2) for i, r in enumerate(records(b"a", 60))]
    produce_all(b.bootstrap, topic_name, sent, acks="all")
    code = b.stop()
    assert code == 0, f"SIGTERM exit code {code}"
    b.start()
    assert_log(b.bootstrap, topic_name, sent, partitions=2)
    more = produce_all(b.bootstrap, topic_name, [{"value": b"new", "partition": 0}], acks="all")
    assert more == [(0, 30)]


def test_kill9_restart_keeps_acknowledged_records(any_broker, topic_name):
    """After kill -9 (with a client connected), a broker restarted at once serves every acks=all record and continues offsets after them."""
    b = any_broker
    create_topic(b.bootstrap, topic_name)
    sent = records(b"k9", 80)
    produce_all(b.bootstrap, topic_name, sent, acks="all", **{"compression.type": "lz4"})
    # A client is connected when the broker dies, as in any real crash: its socket
    # on the Kafka port lingers (FIN-WAIT/TIME_WAIT) and must not block the restart.
    idle_client = kafkawire.RawConnection("127.0.0.1", b.kafka_port)
    time.sleep(0.2)
    b.kill9()
    try:
        b.start()
    finally:
        idle_client.close()
    assert_log(b.bootstrap, topic_name, sent)
    assert produce_all(b.bootstrap, topic_name, [{"value": b"after"}], acks="all") == [(0, 80)]
    b.kill9()
    b.start()
    got = consume(b.bootstrap, topic_name)
    assert [m["offset"] for m in got] == list(range(81))
    assert got[-1]["value"] == b"after"


def test_repeated_restarts_keep_topics_and_configs(broker, topic_name):
    """Topics (with partition counts) created before restarts survive SIGTERM and kill -9 restarts."""
    create_topic(broker.bootstrap, topic_name, partitions=3, config={"retention.ms": "3600000"})
    broker.restart()
    broker.restart(hard=True)
    md = clients.topic_metadata(broker.bootstrap, topic_name)
    assert sorted(md.topics[topic_name].partitions) == [0, 1, 2]


def read_acks(path):
    """[(partition, offset, value)] in acknowledgement order."""
    acks = []
    if not path.exists():
        return acks
    for line in path.read_bytes().splitlines():
        parts = line.split(b" ")
        if len(parts) == 3:  # O_APPEND single writes: no torn lines, but be strict anyway
            acks.append((int(parts[0]), int(parts[1]), parts[2]))
    return acks


def wait_for_acks(path, n, proc, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(read_acks(path)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"crash producer exited early with {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"only {len(read_acks(path))} acks after {timeout_s} s (wanted {n})")


def start_crash_producer(b, topic, tmp_path, name, partitions=1, compression="none"):
    return subprocess.Popen([sys.executable, str(TESTS_DIR / "crash_producer.py"), b.bootstrap, topic,
                             str(tmp_path / f"acks-{name}.txt"), name, str(partitions), compression],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / f"producer-{name}.log", "wb"))


@pytest.mark.parametrize("shards,partitions,compression", [(1, 1, "none"), (2, 1, "none"), (2, 4, "zstd")],
                         ids=["1shard-1part", "2shards-1part", "2shards-4parts-zstd"])
def test_kill9_mid_stream_loses_no_acknowledged_record(broker_factory, topic_name, tmp_path, shards, partitions,
                                                       compression):
    """Across 3 rounds of (acks=all producer streaming, kill -9 the broker mid-stream, restart), every acknowledged record is in the log exactly once, in order, at its acknowledged offset."""
    b = broker_factory(shards=shards)
    create_topic(b.bootstrap, topic_name, partitions=partitions)
    all_acks = []
    rounds = [f"r{n}" for n in range(3)]
    for n, name in enumerate(rounds):
        proc = start_crash_producer(b, topic_name, tmp_path, name, partitions, compression)
        try:
            wait_for_acks(tmp_path / f"acks-{name}.txt", 300 + 200 * n, proc)
            b.kill9()
        finally:
            time.sleep(0.2)  # let the producer notice, then stop it so nothing is retried after restart
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        acks = read_acks(tmp_path / f"acks-{name}.txt")
        assert acks, "no acknowledged records in this round"
        all_acks.extend(acks)
        b.start()

    count = {}
    for p in range(partitions):
        log = consume(b.bootstrap, topic_name, partition=p, timeout_s=60)
        assert [m["offset"] for m in log] == list(range(len(log))), f"partition {p}: offsets not contiguous from 0"
        by_offset = {m["offset"]: m["value"] for m in log}
        acked = [(o, v) for part, o, v in all_acks if part == p]
        missing = [(o, v) for o, v in acked if by_offset.get(o) != v]
        assert not missing, f"partition {p}: {len(missing)} acknowledged records not at their offset, " \
                            f"first: {missing[:5]} (log there: {[by_offset.get(o) for o, _ in missing[:5]]})"
        offsets = [o for o, _ in acked]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), \
            f"partition {p}: acknowledged offsets are not strictly increasing in production order"
        for m in log:
            count[m["value"]] = count.get(m["value"], 0) + 1
        # the log keeps each round's values in production order
        for name in rounds:
            seq = [int(m["value"].split(b"-")[1]) for m in log if m["value"].startswith(name.encode() + b"-")]
            assert seq == sorted(seq), f"partition {p}: round {name} values out of order in the log"
        # and the restarted broker continues after the recovered end
        assert produce_all(b.bootstrap, topic_name, [{"value": b"final", "partition": p}], acks="all") == \
            [(p, len(log))]
    dups = [v for _, _, v in all_acks if count.get(v) != 1]
    assert not dups, f"acknowledged values stored more than once: {dups[:5]}"


def test_sigterm_while_streaming_exits_zero_and_keeps_acknowledged_records(broker_factory, topic_name, tmp_path):
    """SIGTERM while an acks=all producer streams: the broker exits 0 within 20 s and every acknowledged record is there after restart."""
    b = broker_factory(shards=2)
    create_topic(b.bootstrap, topic_name)
    ack_file = tmp_path / "acks-t.txt"
    proc = start_crash_producer(b, topic_name, tmp_path, "t")
    try:
        wait_for_acks(ack_file, 500, proc)
        code = b.stop()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert code == 0, f"SIGTERM under load: exit code {code}"
    acks = read_acks(ack_file)
    b.start()
    by_offset = {m["offset"]: m["value"] for m in consume(b.bootstrap, topic_name, timeout_s=60)}
    missing = [(o, v) for _, o, v in acks if by_offset.get(o) != v]
    assert not missing, f"{len(missing)} acknowledged records lost or moved, first {missing[:5]}"
