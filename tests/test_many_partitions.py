"""More partitions than the process may open files: a broker started with an
open-file limit of 1024 (RLIMIT_NOFILE) holds 1,600 partitions, each with a
segment file that was written, takes produce to every one, restarts after a
clean stop and after kill -9, and serves every record back. Before the
shard's file budget (src/storage/open_files.rs) each partition held two fds
for its life and such a broker could not even start again.
"""

import os
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import clients
from conftest import Broker

NOFILE = 1024
TOPICS = 16
PARTITIONS = 100


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("many-partitions")
    b = Broker(base / "data", base, shards=2)
    b.nofile = NOFILE
    b.start()
    yield b
    b.stop()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def produce_one_each(bootstrap, round_no):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                  "enable.idempotence": True, "queue.buffering.max.messages": 100000})
    failed = []

    def cb(err, msg):
        if err is not None:
            failed.append(err)
    for t in range(TOPICS):
        for part in range(PARTITIONS):
            p.produce(f"many-{t}", key=f"{part}", value=f"round{round_no}-t{t}-p{part}",
                      partition=part, on_delivery=cb)
        p.poll(0)
    assert p.flush(120) == 0, "deliveries still queued after 120 s"
    assert not failed, failed[:5]


def read_everything(bootstrap, expect_per_partition):
    """{(topic, partition): [values]} reading every partition from the beginning."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"many-reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    c.assign([TopicPartition(f"many-{t}", p, 0) for t in range(TOPICS) for p in range(PARTITIONS)])
    got = {}
    want = TOPICS * PARTITIONS * expect_per_partition
    total = 0
    deadline = time.monotonic() + 120
    try:
        while total < want and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1.0):
                assert m.error() is None, m.error()
                got.setdefault((m.topic(), m.partition()), []).append(m.value().decode())
                total += 1
    finally:
        c.close()
    return got


def check(got, rounds):
    missing = []
    for t in range(TOPICS):
        for p in range(PARTITIONS):
            want = [f"round{r}-t{t}-p{p}" for r in range(rounds)]
            if got.get((f"many-{t}", p)) != want:
                missing.append((f"many-{t}", p, got.get((f"many-{t}", p))))
    assert not missing, f"{len(missing)} partitions wrong, e.g. {missing[:3]}"


def test_more_partitions_than_open_files_produce_restart_and_read_back(broker):
    """1,600 partitions under an open-file limit of 1,024: CreateTopics, acks=all produce to every partition, a clean restart, a second round of produce, kill -9 and restart: every record of both rounds reads back in order, and the broker never holds more fds than the limit lets it (it would fail with EMFILE)."""
    t0 = time.monotonic()
    for t in range(TOPICS):
        clients.create_topic(broker.bootstrap, f"many-{t}", partitions=PARTITIONS)
    created_s = time.monotonic() - t0
    produce_one_each(broker.bootstrap, 0)
    fds_loaded = open_fds(broker.proc.pid)
    assert fds_loaded < NOFILE

    t0 = time.monotonic()
    assert broker.restart() == 0
    clean_restart_s = time.monotonic() - t0
    produce_one_each(broker.bootstrap, 1)

    t0 = time.monotonic()
    broker.restart(hard=True)
    crash_restart_s = time.monotonic() - t0
    check(read_everything(broker.bootstrap, 2), 2)
    fds_after = open_fds(broker.proc.pid)
    assert fds_after < NOFILE
    with open(broker.log_paths[-1]) as f:
        log = f.read()
    assert "Too many open files" not in log
    print(f"1600 partitions, RLIMIT_NOFILE {NOFILE}: created in {created_s:.1f} s; fds after produce {fds_loaded}, "
          f"after reading all {fds_after}; clean restart {clean_restart_s:.1f} s, kill -9 restart {crash_restart_s:.1f} s")
