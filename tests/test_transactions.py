"""Transactions (issue 5): a transactional producer's commits are visible to
read_committed consumers and its aborts are not, read_committed never reads
past an open transaction (the last stable offset), a second producer with the
same transactional.id fences the first, sendOffsetsToTransaction commits a
group's offsets with the transaction, the broker aborts transactions left open
past their timeout, and all of it survives kill -9 — checked with
confluent-kafka (librdkafka) and kafkajs."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from clients import admin, b64, consume, consumer, create_topic, js, js_ok, unb64

FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def txn_producer(bootstrap, txn_id, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "linger.ms": 5,
        "message.timeout.ms": 20000,
        "socket.timeout.ms": 10000,
    }
    base.update(conf)
    p = Producer(base)
    p.init_transactions(20)
    return p


def values(records):
    return [r["value"] for r in records]


def read_all(bootstrap, topic, partition=0, isolation="read_committed", timeout_s=30):
    return values(consume(bootstrap, topic, partition=partition, timeout_s=timeout_s, **{"isolation.level": isolation}))


def latest_offsets(bootstrap, topic, partition=0, isolation="read_committed"):
    """(low, high) watermarks as the given isolation level sees them (high = LSO for read_committed)."""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def test_commit_to_two_topics_visible_to_read_committed(any_broker, topic_name):
    """Records of a committed transaction over two topics are read by read_committed consumers, in order, with commit markers occupying offsets."""
    b = any_broker
    t1, t2 = topic_name + "-a", topic_name + "-b"
    create_topic(b.bootstrap, t1)
    create_topic(b.bootstrap, t2, partitions=2)
    p = txn_producer(b.bootstrap, "tx-commit")
    p.begin_transaction()
    for i in range(5):
        p.produce(t1, value=b"a%d" % i)
        p.produce(t2, value=b"b%d" % i, partition=i % 2)
    p.commit_transaction(20)
    assert read_all(b.bootstrap, t1) == [b"a%d" % i for i in range(5)]
    assert read_all(b.bootstrap, t2, 0) == [b"b0", b"b2", b"b4"]
    assert read_all(b.bootstrap, t2, 1) == [b"b1", b"b3"]
    # 5 records + the COMMIT marker.
    assert latest_offsets(b.bootstrap, t1) == (0, 6)
    # A second transaction on the same producer.
    p.begin_transaction()
    p.produce(t1, value=b"again")
    p.commit_transaction(20)
    assert read_all(b.bootstrap, t1)[-1] == b"again"


def test_abort_hidden_from_read_committed_visible_to_read_uncommitted(broker, topic_name):
    """An aborted transaction's records are never returned to read_committed consumers (also when mixed with committed ones) but are to read_uncommitted consumers."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    p = txn_producer(b.bootstrap, "tx-abort")
    p.begin_transaction()
    p.produce(topic_name, value=b"keep-1")
    p.commit_transaction(20)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic_name, value=b"drop-%d" % i)
    p.flush(10)
    p.abort_transaction(20)
    p.begin_transaction()
    p.produce(topic_name, value=b"keep-2")
    p.commit_transaction(20)
    assert read_all(b.bootstrap, topic_name) == [b"keep-1", b"keep-2"]
    assert read_all(b.bootstrap, topic_name, isolation="read_uncommitted") == [b"keep-1", b"drop-0", b"drop-1", b"drop-2", b"keep-2"]


def test_read_committed_stops_at_open_transaction(broker, topic_name):
    """While a transaction is open, read_committed sees only what precedes its first record (the LSO) and ListOffsets latest(read_committed) is that offset; after commit, everything."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    plain = Producer({"bootstrap.servers": b.bootstrap})
    plain.produce(topic_name, value=b"before")
    plain.flush(10)
    p = txn_producer(b.bootstrap, "tx-lso")
    p.begin_transaction()
    p.produce(topic_name, value=b"in-txn")
    p.flush(10)
    plain.produce(topic_name, value=b"after")
    plain.flush(10)
    assert read_all(b.bootstrap, topic_name) == [b"before"]
    assert latest_offsets(b.bootstrap, topic_name) == (0, 1)
    assert latest_offsets(b.bootstrap, topic_name, isolation="read_uncommitted") == (0, 3)
    assert read_all(b.bootstrap, topic_name, isolation="read_uncommitted") == [b"before", b"in-txn", b"after"]
    p.commit_transaction(20)
    assert read_all(b.bootstrap, topic_name) == [b"before", b"in-txn", b"after"]
    assert latest_offsets(b.bootstrap, topic_name) == (0, 4)


def test_second_producer_fences_first_and_aborts_its_transaction(broker, topic_name):
    """init_transactions with the same transactional.id fences the old producer (its commit fails as fenced) and aborts its open transaction; the new one commits."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    old = txn_producer(b.bootstrap, "tx-fence")
    old.begin_transaction()
    old.produce(topic_name, value=b"old")
    old.flush(10)
    new = txn_producer(b.bootstrap, "tx-fence")
    with pytest.raises(KafkaException) as e:
        old.produce(topic_name, value=b"old-2")
        old.commit_transaction(20)
    err = e.value.args[0]
    assert err.fatal() or err.code() in FENCED_CODES, err
    new.begin_transaction()
    new.produce(topic_name, value=b"new")
    new.commit_transaction(20)
    assert read_all(b.bootstrap, topic_name) == [b"new"]
    assert b"old" in read_all(b.bootstrap, topic_name, isolation="read_uncommitted")


def test_send_offsets_to_transaction_commits_group_offsets(broker, topic_name):
    """Consume-transform-produce: offsets sent with send_offsets_to_transaction become the group's committed offsets only when the transaction commits (and stay after kill -9); an aborted transaction leaves them unchanged."""
    b = broker
    src, dst = topic_name + "-in", topic_name + "-out"
    create_topic(b.bootstrap, src)
    create_topic(b.bootstrap, dst)
    plain = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(6):
        plain.produce(src, value=b"m%d" % i)
    plain.flush(10)
    group = "ctp-group"
    c = consumer(b.bootstrap, **{"group.id": group, "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                                 "enable.partition.eof": False})
    p = txn_producer(b.bootstrap, "tx-ctp")
    try:
        c.subscribe([src])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert len(got) == 3
        p.begin_transaction()
        for m in got:
            p.produce(dst, value=m.value().upper())
        p.send_offsets_to_transaction([TopicPartition(src, 0, got[-1].offset() + 1)], c.consumer_group_metadata(), 20)
        p.commit_transaction(20)
        committed = c.committed([TopicPartition(src, 0)], timeout=10)
        assert committed[0].offset == 3
        # An aborted transaction's offsets are not committed.
        p.begin_transaction()
        p.produce(dst, value=b"x")
        p.send_offsets_to_transaction([TopicPartition(src, 0, 5)], c.consumer_group_metadata(), 20)
        p.abort_transaction(20)
        assert c.committed([TopicPartition(src, 0)], timeout=10)[0].offset == 3
    finally:
        c.close()
    assert read_all(b.bootstrap, dst) == [b"M0", b"M1", b"M2"]
    # The committed offset (and the markers in __consumer_offsets) survive kill -9.
    b.restart(hard=True)
    c = consumer(b.bootstrap, **{"group.id": group})
    try:
        assert c.committed([TopicPartition(src, 0)], timeout=20)[0].offset == 3
    finally:
        c.close()


def test_transaction_open_past_timeout_is_aborted(broker, topic_name):
    """A transaction left open past transaction.timeout.ms is aborted by the broker: read_committed moves past it without its records, the old producer is fenced (Kafka bumps the epoch) and a new producer with the same transactional.id works."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    p = txn_producer(b.bootstrap, "tx-timeout", **{"transaction.timeout.ms": 3000, "socket.timeout.ms": 3000, "message.timeout.ms": 3000})
    p.begin_transaction()
    p.produce(topic_name, value=b"stuck")
    p.flush(10)
    assert latest_offsets(b.bootstrap, topic_name) == (0, 0)
    deadline = time.monotonic() + 20
    while latest_offsets(b.bootstrap, topic_name)[1] == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    # The record and the ABORT marker are below the LSO now.
    assert latest_offsets(b.bootstrap, topic_name) == (0, 2)
    assert read_all(b.bootstrap, topic_name) == []
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(10)
    # As in Kafka, the broker bumped the epoch: EndTxn answers PRODUCER_FENCED.
    err = e.value.args[0]
    assert err.code() in FENCED_CODES, err
    # The transactional id itself is usable again by a new producer.
    p2 = txn_producer(b.bootstrap, "tx-timeout")
    p2.begin_transaction()
    p2.produce(topic_name, value=b"next")
    p2.commit_transaction(20)
    assert read_all(b.bootstrap, topic_name) == [b"next"]


def test_transactions_survive_kill9(broker, topic_name):
    """After kill -9: a committed transaction stays visible, the aborted one hidden; a transaction open at the crash is aborted once its timeout passes; the transactional id resumes with a bumped epoch."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    p = txn_producer(b.bootstrap, "tx-crash", **{"transaction.timeout.ms": 3000, "socket.timeout.ms": 3000, "message.timeout.ms": 3000})
    p.begin_transaction()
    p.produce(topic_name, value=b"committed")
    p.commit_transaction(20)
    p.begin_transaction()
    p.produce(topic_name, value=b"aborted")
    p.flush(10)
    p.abort_transaction(20)
    p.begin_transaction()
    p.produce(topic_name, value=b"open")
    p.flush(10)
    b.kill9()
    b.start()
    assert read_all(b.bootstrap, topic_name, isolation="read_uncommitted") == [b"committed", b"aborted", b"open"]
    # The open transaction holds back read_committed until the broker aborts it.
    deadline = time.monotonic() + 30
    while latest_offsets(b.bootstrap, topic_name)[1] < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert latest_offsets(b.bootstrap, topic_name) == (0, 6)
    assert read_all(b.bootstrap, topic_name) == [b"committed"]
    p2 = txn_producer(b.bootstrap, "tx-crash")
    p2.begin_transaction()
    p2.produce(topic_name, value=b"resumed")
    p2.commit_transaction(20)
    assert read_all(b.bootstrap, topic_name) == [b"committed", b"resumed"]


def test_kafkajs_transactions_commit_abort_and_send_offsets(broker, topic_name):
    """kafkajs producer.transaction(): a committed send is read by read_committed consumers, an aborted one only by read_uncommitted ones, and sendOffsets commits the group's offset with the transaction."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    js_ok("produceTransactional", b.bootstrap, transactionalId="js-tx", transactions=[
        {"sends": [{"topic": topic_name, "values": [b64(b"c1"), b64(b"c2")]}],
         "offsets": {"groupId": "js-tx-group", "topics": [{"topic": topic_name, "partitions": [{"partition": 0, "offset": "2"}]}]},
         "action": "commit"},
        {"sends": [{"topic": topic_name, "values": [b64(b"a1")]}], "action": "abort"},
        {"sends": [{"topic": topic_name, "values": [b64(b"c3")]}], "action": "commit"},
    ])
    assert read_all(b.bootstrap, topic_name) == [b"c1", b"c2", b"c3"]
    assert read_all(b.bootstrap, topic_name, isolation="read_uncommitted") == [b"c1", b"c2", b"a1", b"c3"]
    c = consumer(b.bootstrap, **{"group.id": "js-tx-group"})
    try:
        assert c.committed([TopicPartition(topic_name, 0)], timeout=10)[0].offset == 2
    finally:
        c.close()


def test_pending_transactional_offsets_survive_kill9(broker, topic_name):
    """Offsets sent with send_offsets_to_transaction before a kill -9 are still pending after restart: the producer's commit then makes them the group's committed offsets (exactly-once consume-transform-produce across a crash)."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    group = "pending-group"
    c = consumer(b.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic_name, 0)])
        meta = c.consumer_group_metadata()
        p = txn_producer(b.bootstrap, "tx-pending")
        p.begin_transaction()
        p.produce(topic_name, value=b"out")
        p.send_offsets_to_transaction([TopicPartition(topic_name, 0, 42)], meta, 20)
        p.flush(10)
        b.kill9()
        b.start()
        p.commit_transaction(30)
        assert c.committed([TopicPartition(topic_name, 0)], timeout=20)[0].offset == 42
        assert read_all(b.bootstrap, topic_name) == [b"out"]
    finally:
        c.close()


def test_open_and_aborted_transactions_survive_sigterm_restart(broker, topic_name):
    """After a clean restart (the transaction index comes from its close-time checkpoint) an aborted transaction stays hidden and an open one still holds the LSO until a new producer with its transactional.id fences and aborts it."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    p = txn_producer(b.bootstrap, "tx-sigterm")
    p.begin_transaction()
    p.produce(topic_name, value=b"aborted")
    p.flush(10)
    p.abort_transaction(20)
    p.begin_transaction()
    p.produce(topic_name, value=b"committed")
    p.commit_transaction(20)
    p.begin_transaction()
    p.produce(topic_name, value=b"open")
    p.flush(10)
    # aborted@0, ABORT@1, committed@2, COMMIT@3, open@4
    b.restart()
    assert latest_offsets(b.bootstrap, topic_name) == (0, 4)
    assert read_all(b.bootstrap, topic_name) == [b"committed"]
    p2 = txn_producer(b.bootstrap, "tx-sigterm")
    assert latest_offsets(b.bootstrap, topic_name) == (0, 6)
    assert read_all(b.bootstrap, topic_name) == [b"committed"]
    assert read_all(b.bootstrap, topic_name, isolation="read_uncommitted") == [b"aborted", b"committed", b"open"]
    p2.begin_transaction()
    p2.produce(topic_name, value=b"after")
    p2.commit_transaction(20)
    assert read_all(b.bootstrap, topic_name) == [b"committed", b"after"]


API_DESCRIBE_TRANSACTIONS = 65
API_LIST_TRANSACTIONS = 66


def _compact_array(items):
    import kafkawire as kw
    return kw.uvarint(len(items) + 1) + b"".join(items)


def _read_compact_string(r):
    n = r.uvarint() - 1
    return None if n < 0 else r.raw(n).decode()


def _skip_tags(r):
    for _ in range(r.uvarint()):
        r.uvarint()
        r.raw(r.uvarint())


def list_transactions(port, states=(), producer_ids=(), duration_ms=None):
    """ListTransactions v0 (v1 with duration_ms) -> (error, unknown_state_filters, [(id, pid, state)])."""
    import kafkawire as kw
    version = 0 if duration_ms is None else 1
    body = _compact_array([kw.compact_string(s) for s in states]) + _compact_array([kw.i64(p) for p in producer_ids])
    if version == 1:
        body += kw.i64(duration_ms)
    body += kw.uvarint(0)
    with kw.RawConnection("127.0.0.1", port) as c:
        c.send(kw.frame(kw.request_header_v2(API_LIST_TRANSACTIONS, version, 7) + body))
        r = kw.Reader(c.recv_response(7, header_tagged_fields=True))
        r.i32()
        err = r.i16()
        unknown = [_read_compact_string(r) for _ in range(r.uvarint() - 1)]
        states_out = []
        for _ in range(r.uvarint() - 1):
            tid = _read_compact_string(r)
            pid = r.i64()
            st = _read_compact_string(r)
            _skip_tags(r)
            states_out.append((tid, pid, st))
        return err, unknown, states_out


def describe_transactions(port, ids):
    """DescribeTransactions v0 -> {id: (error, state, timeout_ms, pid, epoch, {topic: [partitions]})}."""
    import kafkawire as kw
    body = _compact_array([kw.compact_string(i) for i in ids]) + kw.uvarint(0)
    with kw.RawConnection("127.0.0.1", port) as c:
        c.send(kw.frame(kw.request_header_v2(API_DESCRIBE_TRANSACTIONS, 0, 8) + body))
        r = kw.Reader(c.recv_response(8, header_tagged_fields=True))
        r.i32()
        out = {}
        for _ in range(r.uvarint() - 1):
            err = r.i16()
            tid = _read_compact_string(r)
            st = _read_compact_string(r)
            timeout = r.i32()
            r.i64()  # start time
            pid = r.i64()
            epoch = r.i16()
            topics = {}
            for _ in range(r.uvarint() - 1):
                t = _read_compact_string(r)
                topics[t] = sorted(r.i32() for _ in range(r.uvarint() - 1))
                _skip_tags(r)
            _skip_tags(r)
            out[tid] = (err, st, timeout, pid, epoch, topics)
        return out


def test_list_and_describe_transactions(broker2, topic_name):
    """ListTransactions lists every transactional id with its producer id and state (filters by state, producer id, unknown state names echoed); DescribeTransactions gives state, timeout, producer id/epoch and the open transaction's partitions, TRANSACTIONAL_ID_NOT_FOUND (105) for unknown ids."""
    b = broker2
    assert describe_transactions(b.kafka_port, ["nope"])["nope"][0] == 105
    create_topic(b.bootstrap, topic_name, partitions=2)
    done = txn_producer(b.bootstrap, "tx-done", **{"transaction.timeout.ms": 30000})
    done.begin_transaction()
    done.produce(topic_name, value=b"x", partition=0)
    done.commit_transaction(20)
    open_ = txn_producer(b.bootstrap, "tx-open", **{"transaction.timeout.ms": 40000})
    open_.begin_transaction()
    open_.produce(topic_name, value=b"y", partition=1)
    open_.produce(topic_name, value=b"z", partition=0)
    open_.flush(10)
    err, unknown, listed = list_transactions(b.kafka_port)
    assert err == 0 and unknown == []
    by_id = {t: (pid, st) for t, pid, st in listed}
    assert by_id["tx-done"][1] == "CompleteCommit" and by_id["tx-open"][1] == "Ongoing", listed
    assert [t for t, _, _ in list_transactions(b.kafka_port, states=["Ongoing"])[2]] == ["tx-open"]
    assert [t for t, _, _ in list_transactions(b.kafka_port, producer_ids=[by_id["tx-done"][0]])[2]] == ["tx-done"]
    assert list_transactions(b.kafka_port, states=["Bogus"])[1] == ["Bogus"]
    assert [t for t, _, _ in list_transactions(b.kafka_port, duration_ms=0)[2]] == ["tx-open"]
    assert list_transactions(b.kafka_port, duration_ms=3_600_000)[2] == []
    d = describe_transactions(b.kafka_port, ["tx-open", "tx-done", "nope"])
    assert d["tx-open"][:3] == (0, "Ongoing", 40000) and d["tx-open"][3] == by_id["tx-open"][0]
    assert d["tx-open"][5] == {topic_name: [0, 1]}
    assert d["tx-done"][:2] == (0, "CompleteCommit") and d["tx-done"][5] == {}
    assert d["nope"][0] == 105
    open_.abort_transaction(20)


API_DESCRIBE_PRODUCERS = 61


def describe_producers(port, topic, partition):
    """DescribeProducers v0 -> (error, [(pid, epoch, last_sequence, current_txn_start_offset)])."""
    import kafkawire as kw
    body = _compact_array([kw.compact_string(topic) + _compact_array([kw.i32(partition)]) + kw.uvarint(0)]) + kw.uvarint(0)
    with kw.RawConnection("127.0.0.1", port) as c:
        c.send(kw.frame(kw.request_header_v2(API_DESCRIBE_PRODUCERS, 0, 9) + body))
        r = kw.Reader(c.recv_response(9, header_tagged_fields=True))
        r.i32()
        assert r.uvarint() - 1 == 1
        _read_compact_string(r)
        assert r.uvarint() - 1 == 1
        r.i32()
        err = r.i16()
        _read_compact_string(r)
        producers = []
        for _ in range(r.uvarint() - 1):
            pid, epoch, seq = r.i64(), r.i32(), r.i32()
            r.i64()  # last timestamp
            r.i32()  # coordinator epoch
            producers.append((pid, epoch, seq, r.i64()))
            _skip_tags(r)
        return err, producers


def test_describe_producers_shows_open_transaction(broker, topic_name):
    """DescribeProducers lists a transactional producer with its epoch, last sequence and the first offset of its open transaction (-1 once committed); unknown partitions get UNKNOWN_TOPIC_OR_PARTITION."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    plain = Producer({"bootstrap.servers": b.bootstrap})
    plain.produce(topic_name, value=b"first")
    plain.flush(10)
    p = txn_producer(b.bootstrap, "tx-describe-producers")
    p.begin_transaction()
    for i in range(3):
        p.produce(topic_name, value=b"v%d" % i)
    p.flush(10)
    err, producers = describe_producers(b.kafka_port, topic_name, 0)
    assert err == 0 and len(producers) == 1, producers
    pid, epoch, seq, txn_start = producers[0]
    assert (epoch, seq, txn_start) == (0, 2, 1), producers
    p.commit_transaction(20)
    assert describe_producers(b.kafka_port, topic_name, 0)[1] == [(pid, 0, 2, -1)]
    assert describe_producers(b.kafka_port, topic_name, 7)[0] == 3


def _eos_topics(bootstrap, src, dst, total):
    """Input and output topics of 2 partitions; `total` input records v000000… spread over them."""
    create_topic(bootstrap, src, partitions=2)
    create_topic(bootstrap, dst, partitions=2)
    plain = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(total):
        plain.produce(src, key=b"%d" % i, value=b"v%06d" % i, partition=i % 2)
    assert plain.flush(30) == 0


def _eos_output(bootstrap, dst, total):
    """(partition, read_committed output, the exactly-once output expected) per partition."""
    for part in (0, 1):
        got = values(consume(bootstrap, dst, partition=part, timeout_s=60, **{"isolation.level": "read_committed"}))
        yield part, got, [b"V%06d" % i for i in range(part, total, 2)]


def _wait_for_output(bootstrap, topic, timeout_s=60):
    """Until the loop has written something to `topic` (so kills land mid-stream)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if latest_offsets(bootstrap, topic, isolation="read_uncommitted")[1] > 0:
            return
        time.sleep(0.1)
    raise AssertionError("the loop wrote nothing to %s" % topic)


def _group_committed(bootstrap, group, topic, partitions):
    c = consumer(bootstrap, **{"group.id": group})
    try:
        return sum(max(tp.offset, 0) for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20))
    except KafkaException:
        return None
    finally:
        c.close()


@pytest.mark.parametrize("shards", [1, 2])
def test_consume_transform_produce_exactly_once_across_kill9(broker_factory, topic_name, shards, tmp_path):
    """The consume-transform-produce loop with send_offsets_to_transaction (tests/eos_worker.py), while the broker is killed with -9 and restarted several times mid-stream (and the application restarted when librdkafka hangs, as a liveness probe would): the read_committed output holds every input record transformed exactly once, in input order per partition, and the group's committed offsets reach the end of the input."""
    import random
    import subprocess
    import sys
    from pathlib import Path
    b = broker_factory(shards=shards)
    src, dst, group = topic_name + "-in", topic_name + "-out", "eos-" + topic_name[-40:]
    total = 6000
    _eos_topics(b.bootstrap, src, dst, total)
    worker_script = Path(__file__).parent / "eos_worker.py"
    logs, workers = [], []

    def start_worker():
        log = open(tmp_path / ("eos-worker-%d.log" % len(workers)), "w")
        logs.append(log)
        workers.append(subprocess.Popen([sys.executable, str(worker_script), b.bootstrap, src, dst, group],
                                        stdout=log, stderr=subprocess.STDOUT))

    try:
        start_worker()
        _wait_for_output(b.bootstrap, dst)
        rng = random.Random(shards)
        for _ in range(4):
            time.sleep(rng.uniform(0.2, 1.0))
            b.kill9()
            b.start()
        # Until the group's committed offsets reach the end of the input; a
        # worker without progress for 25 s is killed and replaced.
        deadline = time.monotonic() + 240
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            done = _group_committed(b.bootstrap, group, src, 2)
            if done == total:
                break
            if done is not None and done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > 25:
                workers[-1].kill()
                workers[-1].wait()
                start_worker()
                last_change = time.monotonic()
            time.sleep(1)
        assert done == total, "committed %s of %d after %d worker(s)" % (done, total, len(workers))
        print("exactly-once loop: %d worker process(es)" % len(workers))
    finally:
        for w in workers:
            w.kill()
            w.wait()
        for log in logs:
            log.close()
    for part, got, want in _eos_output(b.bootstrap, dst, total):
        assert got == want, "partition %d: %d records, %d distinct, want %d (%d worker(s))" % (
            part, len(got), len(set(got)), len(want), len(workers))

API_TXN_OFFSET_COMMIT = 28


def txn_offset_commit(port, txn_id, group, pid, epoch, offsets, generation=-1, member="", instance=None):
    """TxnOffsetCommit v3 (KIP-447 member fields) -> [error per (topic, partition, offset)]."""
    import kafkawire as kw
    nullable = (lambda s: kw.uvarint(0)) if instance is None else kw.compact_string
    body = kw.compact_string(txn_id) + kw.compact_string(group) + kw.i64(pid) + kw.i16(epoch)
    body += kw.i32(generation) + kw.compact_string(member) + nullable(instance)
    topics = {}
    for t, p, o in offsets:
        topics.setdefault(t, []).append(kw.i32(p) + kw.i64(o) + kw.i32(-1) + kw.uvarint(0) + kw.uvarint(0))
    body += _compact_array([kw.compact_string(t) + _compact_array(ps) + kw.uvarint(0) for t, ps in topics.items()])
    body += kw.uvarint(0)
    with kw.RawConnection("127.0.0.1", port) as c:
        c.send(kw.frame(kw.request_header_v2(API_TXN_OFFSET_COMMIT, 3, 11) + body))
        r = kw.Reader(c.recv_response(11, header_tagged_fields=True))
        r.i32()
        codes = []
        for _ in range(r.uvarint() - 1):
            _read_compact_string(r)
            for _ in range(r.uvarint() - 1):
                r.i32()
                codes.append(r.i16())
                _skip_tags(r)
            _skip_tags(r)
        return codes


def test_txn_offset_commit_checks_member_generation_and_producer_epoch(broker, topic_name):
    """TxnOffsetCommit as Kafka checks it: a member id the group does not have is UNKNOWN_MEMBER_ID (25), a wrong generation ILLEGAL_GENERATION (22), a request naming no member is accepted, and a producer fenced on the offsets partition (its open transaction aborted by a new producer with the same transactional.id) gets INVALID_PRODUCER_EPOCH (47) instead of leaving offsets the next transaction would commit."""
    b = broker
    create_topic(b.bootstrap, topic_name)
    group = "txn-checks"
    c = consumer(b.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest", "enable.partition.eof": False})
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        assert c.assignment(), "the consumer never joined"
        member = c.memberid()
        p = txn_producer(b.bootstrap, "tx-checks")
        p.begin_transaction()
        p.produce(topic_name, value=b"x")
        p.send_offsets_to_transaction([TopicPartition(topic_name, 0, 1)], c.consumer_group_metadata(), 20)
        _, _, _, pid, epoch, _ = describe_transactions(b.kafka_port, ["tx-checks"])["tx-checks"]
        at = [(topic_name, 0, 1)]
        assert txn_offset_commit(b.kafka_port, "tx-checks", group, pid, epoch, at, generation=1, member="nobody") == [25]
        assert txn_offset_commit(b.kafka_port, "tx-checks", group, pid, epoch, at, generation=9999, member=member) == [22]
        assert txn_offset_commit(b.kafka_port, "tx-checks", group, pid, epoch, at) == [0]
        # A second producer fences the first and aborts its transaction
        # (markers with a bumped epoch): the zombie's offsets are refused.
        p2 = txn_producer(b.bootstrap, "tx-checks")
        assert txn_offset_commit(b.kafka_port, "tx-checks", group, pid, epoch, [(topic_name, 0, 7)]) == [47]
        p2.begin_transaction()
        p2.produce(topic_name, value=b"y")
        p2.commit_transaction(20)
        assert c.committed([TopicPartition(topic_name, 0)], timeout=10)[0].offset < 0
    finally:
        c.close()


def test_kafkajs_consume_transform_produce_exactly_once_across_kill9(broker2, topic_name):
    """kafkajs' exactly-once loop (eachBatch → transaction → send → sendOffsets → commit) while the broker is killed with -9 and restarted mid-stream: the read_committed output holds every input record transformed exactly once, in order per partition."""
    import random
    import threading
    b = broker2
    src, dst, group = topic_name + "-in", topic_name + "-out", "js-eos-" + topic_name[-40:]
    total = 3000
    _eos_topics(b.bootstrap, src, dst, total)
    out = []
    worker = threading.Thread(target=lambda: out.append(js(
        "exactlyOnceLoop", b.bootstrap, timeout_s=200, driverTimeoutMs=180000, groupId=group,
        transactionalId=group + "-tx", input=src, output=dst, total=total)), daemon=True)
    worker.start()
    _wait_for_output(b.bootstrap, dst)
    rng = random.Random(7)
    for _ in range(3):
        time.sleep(rng.uniform(0.2, 1.0))
        b.kill9()
        b.start()
    worker.join(210)
    assert out and out[0]["ok"], "kafkajs loop failed: %s\n%s" % (out and out[0].get("error"), out and out[0].get("stderr"))
    for part, got, want in _eos_output(b.bootstrap, dst, total):
        assert got == want, "partition %d: %d records, %d distinct, want %d (errors: %s)" % (
            part, len(got), len(set(got)), len(want), out[0]["result"]["errors"][-5:])


def test_idle_transactional_ids_expire(broker_factory, topic_name):
    """transactional.id.expiration.ms: an id with no open transaction and no request for that long is forgotten (gone from ListTransactions, TRANSACTIONAL_ID_NOT_FOUND from DescribeTransactions, still gone after kill -9); an id with an open transaction is kept; a new producer with the forgotten id starts over and commits."""
    b = broker_factory(shards=1, env={"FJORD_TRANSACTIONAL_ID_EXPIRATION_MS": "2000",
                                      "FJORD_TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS": "300"})
    create_topic(b.bootstrap, topic_name)
    idle = txn_producer(b.bootstrap, "tx-idle")
    idle.begin_transaction()
    idle.produce(topic_name, value=b"done")
    idle.commit_transaction(20)
    busy = txn_producer(b.bootstrap, "tx-busy", **{"transaction.timeout.ms": 60000})
    busy.begin_transaction()
    busy.produce(topic_name, value=b"open")
    busy.flush(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ids = {tid for tid, _, _ in list_transactions(b.kafka_port)[2]}
        if "tx-idle" not in ids:
            break
        time.sleep(0.3)
    assert "tx-idle" not in ids, "the idle transactional id never expired"
    assert "tx-busy" in ids, "an id with an open transaction must not expire"
    assert describe_transactions(b.kafka_port, ["tx-idle"])["tx-idle"][0] == 105
    b.kill9()
    b.start()
    assert describe_transactions(b.kafka_port, ["tx-idle"])["tx-idle"][0] == 105
    again = txn_producer(b.bootstrap, "tx-idle")
    again.begin_transaction()
    again.produce(topic_name, value=b"again")
    again.commit_transaction(20)
    busy.abort_transaction(30)
    assert read_all(b.bootstrap, topic_name) == [b"done", b"again"]
