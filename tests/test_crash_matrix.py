"""Crash matrix: kill -9 at seeded random moments while acks=all producers append
to three topics with tiny segments (so rolls, index writes, seals happen all the
time), one with retention.bytes (segments deleted, log start moving) and one
compacted (cleaner rewriting and merging segments); after every restart each acknowledged
record is present exactly once at its acknowledged offset (minus what retention
legitimately deleted below the log start and what compaction legitimately
superseded), and the indexes agree with the log (ListOffsets by timestamp and
fetches from random offsets return the right records)."""

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import TopicPartition

import clients

TESTS_DIR = Path(__file__).resolve().parent
SEED = int(os.environ.get("FJORD_CRASH_SEED", "20261122"))
ITERATIONS = int(os.environ.get("FJORD_CRASH_ITERATIONS", "10"))
KEYS = 40
ENV = {
    "FJORD_LOG_SEGMENT_BYTES": "16384",
    "FJORD_LOG_INDEX_INTERVAL_BYTES": "1024",
    "FJORD_LOG_RETENTION_CHECK_INTERVAL_MS": "100",
    "FJORD_LOG_CLEANER_BACKOFF_MS": "50",
}
PLAIN, RETAINED, COMPACTED = 0, 1, 2
SAMPLES = 3
SENT = re.compile(rb"i\d+-\d{8}-v{80}")


def read_acks(path):
    """[(topic index, offset, key, value)] from the producers' ack files."""
    out = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        t, off, key, value = line.split(b" ")
        out.append((int(t), int(off), key, value))
    return out


def check_plain(b, topic, acked, rng):
    """Every acked record at its offset, offsets contiguous from 0, nothing twice."""
    got = clients.consume(b.bootstrap, topic, timeout_s=60)
    offsets = [m["offset"] for m in got]
    assert offsets == list(range(len(got))), f"{topic}: offsets contiguous from 0"
    for off, (key, value) in acked.items():
        assert off < len(got), f"{topic}: acked offset {off} missing (log end {len(got)})"
        assert (got[off]["key"], got[off]["value"]) == (key, value), f"{topic}: offset {off}"
    check_indexes(b, topic, got, rng)
    return got


def check_retained(b, topic, acked, rng):
    """Everything from the log start on is contiguous and holds every acked record there."""
    lo, hi = clients.watermarks(b.bootstrap, topic)
    got = clients.consume(b.bootstrap, topic, timeout_s=60)
    offsets = [m["offset"] for m in got]
    assert offsets == list(range(lo, hi)), f"{topic}: offsets contiguous from the log start {lo}"
    by_off = {m["offset"]: m for m in got}
    for off, (key, value) in acked.items():
        if off >= lo:
            assert (by_off[off]["key"], by_off[off]["value"]) == (key, value), f"{topic}: offset {off}"
    check_indexes(b, topic, got, rng)
    return lo


def check_compacted(b, topic, acked, rng):
    """No record twice, none renumbered or altered, and the latest record of every key kept."""
    got = clients.consume(b.bootstrap, topic, timeout_s=60)
    offsets = [m["offset"] for m in got]
    assert offsets == sorted(set(offsets)), f"{topic}: strictly increasing offsets"
    values = [m["value"] for m in got]
    assert len(values) == len(set(values)), f"{topic}: a record appears twice"
    by_off = {m["offset"]: m for m in got}
    for m in got:
        if m["offset"] in acked:
            assert (m["key"], m["value"]) == acked[m["offset"]], f"{topic}: offset {m['offset']} altered"
        else:
            # Written but not acknowledged before the crash: one of the producers' records, intact.
            assert SENT.fullmatch(m["value"]), f"{topic}: unknown record at {m['offset']}"
    # The newest offset per key among acked and present records must be present.
    newest = {}
    for off, (key, _) in acked.items():
        newest[key] = max(newest.get(key, -1), off)
    for m in got:
        newest[m["key"]] = max(newest.get(m["key"], -1), m["offset"])
    for key, off in newest.items():
        assert off in by_off, f"{topic}: latest record of {key!r} at {off} lost"
    # Fetch from random offsets (gaps included) starts at the next surviving record.
    if got:
        for o in rng.sample(range(offsets[-1] + 1), min(SAMPLES, offsets[-1] + 1)):
            first = clients.consume(b.bootstrap, topic, offset=o, count=1)[0]
            assert first["offset"] == min(x for x in offsets if x >= o), f"{topic}: fetch at {o}"
    return len(got), (offsets[-1] + 1 if got else 0)


def check_indexes(b, topic, got, rng):
    """ListOffsets by timestamp and fetches at random offsets agree with the log."""
    if not got:
        return
    c = clients.consumer(b.bootstrap)
    try:
        for m in rng.sample(got, min(SAMPLES, len(got))):
            ts = m["timestamp"]
            want = next(x["offset"] for x in got if x["timestamp"] >= ts)
            res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert res[0].offset == want, f"{topic}: ListOffsets({ts}) = {res[0].offset}, log says {want}"
    finally:
        c.close()
    for m in rng.sample(got, min(SAMPLES, len(got))):
        first = clients.consume(b.bootstrap, topic, offset=m["offset"], count=1)[0]
        assert (first["offset"], first["value"]) == (m["offset"], m["value"]), f"{topic}: fetch at {m['offset']}"


def test_kill9_at_random_moments_keeps_every_acknowledged_record(broker_factory, topic_name, tmp_path):
    # Proves acks=all data survives kill -9 during appends, rolls, retention and compaction (segment merges included), and the indexes stay right.
    rng = random.Random(SEED)
    b = broker_factory(env=ENV)
    topics = [f"{topic_name}-plain", f"{topic_name}-retained", f"{topic_name}-compacted"]
    clients.create_topic(b.bootstrap, topics[PLAIN])
    clients.create_topic(b.bootstrap, topics[RETAINED], config={"retention.bytes": "50000"})
    clients.create_topic(b.bootstrap, topics[COMPACTED],
                         config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    ack_file = tmp_path / "acks.txt"
    started = time.monotonic()
    lo_seen = 0
    compacted_away = 0
    for it in range(ITERATIONS):
        prod = subprocess.Popen(
            [sys.executable, str(TESTS_DIR / "crash_matrix_producer.py"), b.bootstrap, str(ack_file),
             f"i{it}", str(KEYS), *topics],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(rng.uniform(0.4, 2.0))
            b.kill9()
        finally:
            prod.kill()
            prod.wait(timeout=10)
        b.start()
        acks = read_acks(ack_file)
        acked = [{}, {}, {}]
        for t, off, key, value in acks:
            assert off not in acked[t] or acked[t][off] == (key, value), f"offset {off} of topic {t} acknowledged twice"
            acked[t][off] = (key, value)
        assert all(acked), "the producer got acknowledgements on every topic"
        check_plain(b, topics[PLAIN], acked[PLAIN], rng)
        lo = check_retained(b, topics[RETAINED], acked[RETAINED], rng)
        assert lo >= lo_seen, "the log start never moves back"
        lo_seen = lo
        present, end = check_compacted(b, topics[COMPACTED], acked[COMPACTED], rng)
        compacted_away = max(compacted_away, end - present)
    assert lo_seen > 0, "retention deleted segments during the run"
    # Cleaned segments are merged (groups up to segment.bytes), so the compacted log does not
    # keep one small or empty file per 16 KiB ever written (tens of thousands of offsets here).
    def segment_files():
        return sorted((p.name, p.stat().st_size) for p in (b.data_dir / "kafka" / topics[COMPACTED]).glob("*/*.log"))
    deadline = time.monotonic() + 30
    while len(segment_files()) > 8 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(segment_files()) <= 8, f"cleaned segments merged: {segment_files()}"
    assert compacted_away > 0, "compaction removed superseded records during the run"
    assert time.monotonic() - started < 240
