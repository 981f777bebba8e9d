"""A full disk, for real: the broker's data dir on a 64 MiB loopback ext4
filesystem that fills up. Produce gets KAFKA_STORAGE_ERROR, everything
acknowledged before stays readable, and produce recovers by itself once space
is freed. Skips (with the reason) where loop mounting is not possible."""

import os
import shutil
import subprocess
import time

import pytest
from confluent_kafka import KafkaError

import clients

RECORD_BYTES = 100_000
# 64 MiB filesystem / 100 KB records: it must fill long before this.
ATTEMPTS_MAX = 1000
FILLER_BYTES = 8 << 20


def run(*cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)


@pytest.fixture
def small_fs(tmp_path):
    """A mounted 64 MiB ext4 image; unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("loop mounting needs root")
    if not shutil.which("mkfs.ext4"):
        pytest.skip("mkfs.ext4 is not installed")
    img, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    mnt.mkdir()
    run("truncate", "-s", "64M", str(img))
    made = run("mkfs.ext4", "-q", "-F", str(img))
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stdout.decode(errors='replace')}")
    mounted = run("mount", "-o", "loop", str(img), str(mnt))
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount here: {mounted.stdout.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        run("umount", "-l", str(mnt))


def produce_one(p, topic, value):
    """Produce one record and wait for its report: (error or None, offset)."""
    out = {}

    def cb(err, msg):
        out["r"] = (err, msg.offset())

    p.produce(topic, value=value, on_delivery=cb)
    p.flush(30)
    return out.get("r", (KafkaError(KafkaError._MSG_TIMED_OUT), -1))


def test_full_disk_fails_produce_keeps_data_and_recovers(broker_factory, small_fs, topic_name):
    """Filling the data dir's filesystem makes produce fail with KAFKA_STORAGE_ERROR (no retries), leaves every acknowledged record readable byte for byte, and once a filler file is removed produce succeeds again without a restart."""
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        f.write(os.urandom(FILLER_BYTES))
        f.flush()
        os.fsync(f.fileno())
    b = broker_factory(shards=1, data_dir=small_fs / "data")
    clients.create_topic(b.bootstrap, topic_name)
    p = clients.producer(b.bootstrap, **{"retries": 0, "acks": "all", "linger.ms": 0,
                                        "message.max.bytes": 2_000_000})
    acked = []
    error = None
    for i in range(ATTEMPTS_MAX):
        value = f"{i:08d}".encode() * (RECORD_BYTES // 8)
        err, offset = produce_one(p, topic_name, value)
        if err is not None:
            error = err
            break
        assert offset == len(acked), (offset, len(acked))
        acked.append(value)
    assert error is not None, f"the 64 MiB filesystem never filled after {ATTEMPTS_MAX} records"
    assert error.code() == KafkaError.KAFKA_STORAGE_ERROR, error
    assert len(acked) > 100, len(acked)
    # Fetch keeps working and nothing acknowledged was damaged.
    got = clients.consume(b.bootstrap, topic_name, count=len(acked), timeout_s=60)
    assert [m["offset"] for m in got] == list(range(len(acked)))
    assert all(m["value"] == v for m, v in zip(got, acked))
    # Still full: fails again, and the high watermark did not move.
    err, _ = produce_one(p, topic_name, b"y" * RECORD_BYTES)
    assert err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert clients.watermarks(b.bootstrap, topic_name) == (0, len(acked))
    # Free space: produce recovers by itself.
    filler.unlink()
    os.sync()
    deadline = time.monotonic() + 30
    while True:
        err, offset = produce_one(p, topic_name, b"after" * 1000)
        if err is None:
            break
        assert time.monotonic() < deadline, f"produce did not recover after freeing space: {err}"
        time.sleep(0.5)
    assert offset == len(acked), "offsets of the failed appends were rolled back and reused"
    got = clients.consume(b.bootstrap, topic_name, count=len(acked) + 1, timeout_s=60)
    assert got[-1]["value"] == b"after" * 1000
    assert all(m["value"] == v for m, v in zip(got, acked))
    # And a restart finds an intact log.
    b.stop()
    b.start()
    assert clients.watermarks(b.bootstrap, topic_name) == (0, len(acked) + 1)
