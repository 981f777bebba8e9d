"""Replication across a three-node Fjord cluster (tests/cluster.py), driven with
real confluent-kafka clients: acks=all records survive leader kills, a whole
cluster crash and a rolling restart; a deposed leader truncates what only it
had; group and transaction coordinators fail over with their state.

One cluster for the module. Tests that kill, stop or freeze nodes bring every
node back and wait until each partition's ISR holds all its replicas again (an
autouse fixture checks that after every test too).
"""

import collections
import itertools
import os
import signal
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import clients
import kafkawire as kw
from clients import wait_for
from cluster import Cluster, read_partitions

COORDINATOR_NOT_AVAILABLE = 15
_corr = itertools.count(1000)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("replication")).start_live()
    yield c
    for n in c:
        cont(n)
    c.stop()


@pytest.fixture(autouse=True)
def _whole_cluster(request, cluster):
    """Logs of every node go with a failure; after each test every node runs and every ISR is full."""
    request.node._fjord_brokers = list(cluster)
    yield
    heal(cluster)


# ------------------------------------------------------------------ helpers


def cont(node):
    """SIGCONT a node that may be SIGSTOPped (harmless otherwise)."""
    if node.proc is not None and node.proc.poll() is None:
        os.kill(node.proc.pid, signal.SIGCONT)


def view(node, topic, partition=0):
    """/v1/cluster's entry for topic/partition as `node` sees it, or None."""
    for t in node.cluster_view(timeout_s=2)["topics"]:
        if t["name"] == topic:
            for p in t["partitions"]:
                if p["partition"] == partition:
                    return p
    return None


def replica_ids(p):
    return [r["node_id"] for r in p["replicas"]]


def fully_replicated(cluster):
    """Every node's /v1/cluster shows every partition led and its ISR = its replicas."""
    try:
        for n in cluster:
            for t in n.cluster_view(timeout_s=2)["topics"]:
                for p in t["partitions"]:
                    if p["leader"] < 0 or sorted(p["isr"]) != sorted(replica_ids(p)):
                        return False
        return True
    except (OSError, ValueError):
        return False


def heal(cluster, timeout_s=60):
    """Thaw every node, start the ones not running, wait until all are live and every ISR is full."""
    for n in cluster:
        cont(n)
    for n in cluster:
        if not n.is_running():
            n.spawn()
    for n in cluster:
        n.wait_healthy()
    cluster.wait_all_live(timeout_s)
    assert wait_for(lambda: fully_replicated(cluster), timeout_s, 0.2), \
        {n.node_id: [t for t in n.cluster_view()["topics"]] for n in cluster}


def create(cluster, topic, partitions, min_isr):
    clients.create_topic(cluster.bootstrap, topic, partitions=partitions, replication_factor=3,
                         config={"min.insync.replicas": str(min_isr)})

    def ready():
        for n in cluster:
            for i in range(partitions):
                p = view(n, topic, i)
                if p is None or p["leader"] < 0 or sorted(p["isr"]) != [1, 2, 3]:
                    return False
        return True
    assert wait_for(ready, 20), {n.node_id: view(n, topic) for n in cluster}
    return {i: view(cluster[1], topic, i) for i in range(partitions)}


def read_log(bootstrap, topic, partitions, isolation="read_uncommitted", timeout_s=30):
    """Every partition read from the beginning to partition EOF -> {partition: [(offset, value)]}."""
    return read_partitions(bootstrap, topic, partitions, isolation, timeout_s, offsets=True)


def read_log_until(bootstrap, topic, partitions, complete, isolation="read_uncommitted", timeout_s=30):
    """read_log again until complete(result) (a high watermark may lag a moment after a
    leader change); returns the last read for the caller's exact assertions."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = read_log(bootstrap, topic, partitions, isolation)
        if complete(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def check_acked(log, acked, label):
    """Every acknowledged value is in `log` exactly once, at the offset its delivery report gave,
    acknowledged values keep their send order, no offset appears twice and no value twice."""
    for part, entries in log.items():
        offsets = [o for o, _ in entries]
        assert len(offsets) == len(set(offsets)), f"{label}: partition {part} repeats offsets"
        values = [v for _, v in entries]
        dup = [v for v, k in collections.Counter(values).items() if k > 1]
        assert not dup, f"{label}: partition {part}: records read twice: {dup[:5]}"
    at = {v: (part, o) for part, entries in log.items() for o, v in entries}
    missing = [(v, where) for v, where in acked.items() if v not in at]
    assert not missing, f"{label}: {len(missing)} of {len(acked)} acknowledged records missing, e.g. {missing[:5]}"
    moved = [(v, where, at[v]) for v, where in acked.items() if at[v] != where]
    assert not moved, f"{label}: acknowledged records at other offsets than reported: {moved[:5]}"
    for part, entries in log.items():
        seqs = [int(v.split(b"-")[-1]) for _, v in entries if v in acked]
        assert seqs == sorted(seqs), f"{label}: partition {part}: acknowledged records out of send order"


class SteadyProducer:
    """A confluent-kafka producer (acks=all, idempotent) sending unique values PREFIX-SEQ at
    `rate` per second round-robin over `partitions`, in a thread of its own."""

    def __init__(self, bootstrap, topic, partitions, prefix, rate=300, **conf):
        base = {"acks": "all", "enable.idempotence": True, "message.timeout.ms": 60000, "linger.ms": 5}
        base.update(conf)
        self.p = clients.producer(bootstrap, **base)
        self.topic, self.partitions, self.prefix, self.rate = topic, partitions, prefix, rate
        self.acked = {}  # value -> (partition, offset)
        self.failed = {}  # value -> KafkaError
        self.sent = 0
        self.sent_at = {}  # value -> monotonic time of produce()
        self.latency = {}  # value -> seconds from produce() to its delivery report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cb(self, err, msg):
        self.latency[msg.value()] = time.monotonic() - self.sent_at[msg.value()]
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.failed[msg.value()] = err

    def _run(self):
        t0 = time.monotonic()
        for seq in itertools.count():
            if self._stop.is_set():
                break
            part = self.partitions[seq % len(self.partitions)]
            value = f"{self.prefix}-{seq}".encode()
            self.sent_at[value] = time.monotonic()
            self.p.produce(self.topic, value=value, partition=part, on_delivery=self._cb)
            self.sent += 1
            self.p.poll(0)
            pause = t0 + (seq + 1) / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def start(self):
        self._thread.start()
        return self

    def slowest(self):
        """{partition: (seconds, value)}: the slowest delivery report per partition."""
        out = {}
        for v, secs in self.latency.items():
            part = self.partitions[int(v.split(b"-")[-1]) % len(self.partitions)]
            if secs > out.get(part, (-1, None))[0]:
                out[part] = (round(secs, 2), v)
        return out

    def wait_acked(self, count, timeout_s=30):
        assert wait_for(lambda: len(self.acked) >= count, timeout_s, 0.02), \
            f"{len(self.acked)} of {count} acknowledged; failures {list(self.failed.values())[:3]}"

    def stop(self, flush_s=90):
        self._stop.set()
        self._thread.join(10)
        remaining = self.p.flush(flush_s)
        assert remaining == 0, f"{remaining} records undelivered after {flush_s} s"
        assert len(self.acked) + len(self.failed) == self.sent, (len(self.acked), len(self.failed), self.sent)


def find_coordinator(node, key, key_type, timeout_s=20):
    """FindCoordinator v1 sent raw to `node` (key_type 0 group, 1 transaction), retried while
    the internal topic is being created -> node id."""
    deadline = time.monotonic() + timeout_s
    while True:
        corr = next(_corr)
        err, node_id, _host, _port = kw.parse_find_coordinator_v1_response(
            node.raw(kw.find_coordinator_v1(corr, key, key_type=key_type), corr))
        if err == 0:
            return node_id
        assert err == COORDINATOR_NOT_AVAILABLE and time.monotonic() < deadline, (node, key, key_type, err)
        time.sleep(0.2)


def java_string_hash(s):
    """Java's String.hashCode as an unsigned 32-bit value (Kafka maps a key to a partition of
    __consumer_offsets / __transaction_state with it)."""
    b = s.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(f">{len(b) // 2}H", b):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h


def new_leader(survivors, topic, partition, old_leader, old_epoch, timeout_s=15):
    """Wait until every survivor's /v1/cluster shows a leader other than `old_leader` with a bigger
    epoch -> that partition entry (None on timeout)."""
    def check():
        ps = [view(n, topic, partition) for n in survivors]
        if all(p is not None and p["leader"] not in (-1, old_leader) and p["leader_epoch"] > old_epoch
               and p["leader"] in p["isr"] for p in ps) and len({p["leader"] for p in ps}) == 1:
            return ps[0]
        return None
    return wait_for(check, timeout_s, 0.05)


def in_isr(nodes, topic, partitions, node_id):
    return all(node_id in (view(n, topic, i) or {"isr": []})["isr"] for n in nodes for i in partitions)


# ------------------------------------------------------------------ 1. kill -9 of the leader


def test_acknowledged_records_survive_kill9_of_the_leader_under_steady_load(cluster):
    """An acks=all idempotent producer sending ~300 unique records/s to a 3-partition RF 3 topic (min.insync.replicas=2) keeps going through a kill -9 of partition 0's leader: no delivery fails, every acknowledged record reads back exactly once, at its reported offset and in send order, a new leader from the ISR with a bigger epoch shows in /v1/cluster and Metadata, and the restarted node rejoins the ISR and, made leader again by a preferred election, serves the same log."""
    topic = "rep-kill-leader"
    parts = create(cluster, topic, 3, min_isr=2)
    before = parts[0]
    victim = cluster[before["leader"]]
    survivors = [n for n in cluster if n is not victim]
    prod = SteadyProducer(cluster.bootstrap, topic, [0, 1, 2], "kill-leader", rate=300).start()
    try:
        prod.wait_acked(900)
        acked_at_kill = len(prod.acked)
        victim.kill9()
        t0 = time.monotonic()
        after = new_leader(survivors, topic, 0, victim.node_id, before["leader_epoch"])
        print(f"kill -9 of leader {victim.node_id} (epoch {before['leader_epoch']}) after {acked_at_kill} acks: "
              f"new leader {after and after['leader']} epoch {after and after['leader_epoch']} "
              f"isr {after and after['isr']} after {time.monotonic() - t0:.2f} s")
        assert after, {n.node_id: view(n, topic) for n in survivors}
        assert victim.node_id not in after["isr"], after
        md = survivors[0].metadata([topic])["topics"][topic]["partitions"][0]
        assert md["leader"] == after["leader"] and md["error"] == 0, md
        prod.wait_acked(acked_at_kill + 900, timeout_s=40)
    finally:
        prod.stop()
    print(f"sent {prod.sent}, acknowledged {len(prod.acked)}, failed {len(prod.failed)}")
    assert not prod.failed, f"{len(prod.failed)} deliveries failed: {list(prod.failed.items())[:5]}"

    victim.spawn()
    victim.wait_healthy()
    assert wait_for(lambda: in_isr(cluster, topic, range(3), victim.node_id), 30), \
        {n.node_id: view(n, topic) for n in cluster}
    ends = collections.Counter(part for part, _ in prod.acked.values())
    log = read_log_until(cluster.bootstrap, topic, range(3),
                         lambda got: all(len(got[p]) >= ends[p] for p in range(3)))
    check_acked(log, prod.acked, "after failover")

    # The killed node's replica, caught up, is the same log when it leads again.
    assert replica_ids(before)[0] == victim.node_id, before
    election = clients.elect_preferred(cluster.bootstrap, topic, [0])
    assert election == {0: None}, election
    assert wait_for(lambda: all((view(n, topic) or {}).get("leader") == victim.node_id for n in cluster), 15), \
        {n.node_id: view(n, topic) for n in cluster}
    again = read_log_until(cluster.bootstrap, topic, [0], lambda got: len(got[0]) >= len(log[0]))
    assert again[0] == log[0], "partition 0 read from the restarted leader differs from the failover leader's"


# ------------------------------------------------------------------ 2. the whole cluster crashes


def test_acknowledged_records_survive_kill9_of_every_broker_at_once(cluster):
    """kill -9 of all three brokers at once, while an acks=all idempotent producer is mid-stream and right after acknowledgements arrived: restarted, the cluster has every record acknowledged before the crash exactly once at its reported offset, and the same producer's remaining records are delivered after the restart without duplicates."""
    topic = "rep-crash-all"
    create(cluster, topic, 3, min_isr=2)
    prod = SteadyProducer(cluster.bootstrap, topic, [0, 1, 2], "crash-all", rate=400).start()
    crashed = False
    try:
        prod.wait_acked(600)
        for n in cluster:
            n.proc.kill()  # SIGKILL to all three before reaping any
        acked_before = dict(prod.acked)
        for n in cluster:
            n.kill9()
        crashed = True
        time.sleep(0.5)
        prod._stop.set()  # stop sending; in-flight and queued records are retried after the restart
        t0 = time.monotonic()
        cluster.start()
        cluster.wait_all_live(60)
        print(f"all three killed after {len(acked_before)} acks; cluster back after {time.monotonic() - t0:.2f} s")
    finally:
        if not crashed:
            prod._stop.set()
        prod.stop()
    print(f"sent {prod.sent}, acknowledged {len(prod.acked)}, failed {len(prod.failed)}")
    assert all(prod.acked.get(v) == where for v, where in acked_before.items()), \
        "an acknowledgement changed after the crash"
    ends = collections.Counter(part for part, _ in prod.acked.values())
    log = read_log_until(cluster.bootstrap, topic, range(3),
                         lambda got: all(len(got[p]) >= ends[p] for p in range(3)), timeout_s=40)
    check_acked(log, acked_before, "acknowledged before the crash")
    check_acked(log, prod.acked, "acknowledged at all")


# ------------------------------------------------------------------ 3. rolling restart


def test_rolling_restart_with_sigterm_loses_and_fails_nothing(cluster):
    """A rolling restart, SIGTERM of each node in turn (exit 0), started again and waited for until it is back in the ISR of every partition, while an acks=all idempotent producer with default retries sends continuously to a 3-partition RF 3 topic (min.insync.replicas=2): no delivery fails, and every record reads back exactly once, at its reported offset, in send order."""
    topic = "rep-rolling"
    create(cluster, topic, 3, min_isr=2)
    prod = SteadyProducer(cluster.bootstrap, topic, [0, 1, 2], "rolling", rate=200).start()
    timings = []
    try:
        prod.wait_acked(200)
        for n in cluster:
            t0 = time.monotonic()
            code = n.stop()
            t1 = time.monotonic()
            assert code == 0, f"{n}: SIGTERM exit code {code}"
            # What a rolling restart waits on: the others report this node down
            # and its replicas missing from ISRs until it is back.
            other = next(m for m in cluster if m is not n)
            def reported_down():
                h = other.health_overview()
                return (not h["is_healthy"] and n.node_id in h["nodes_down"]
                        and h["under_replicated_count"] >= 3 and h["leaderless_count"] == 0)
            assert wait_for(reported_down, 5, 0.05), other.health_overview()
            n.spawn()
            n.wait_healthy()
            assert wait_for(lambda: fully_replicated(cluster), 40, 0.1), \
                {m.node_id: view(m, topic) for m in cluster if m.is_running()}
            assert wait_for(lambda: all(m.health_overview()["is_healthy"] for m in cluster), 10, 0.1), \
                [m.health_overview() for m in cluster]
            timings.append((n.node_id, round(t1 - t0, 2), round(time.monotonic() - t1, 2)))
            acked = len(prod.acked)
            prod.wait_acked(acked + 100)
    finally:
        prod.stop()
    print(f"(node, stop s, back in every ISR s): {timings}; sent {prod.sent}, acknowledged {len(prod.acked)}; "
          f"slowest delivery per partition {prod.slowest()}")
    assert not prod.failed, f"{len(prod.failed)} deliveries failed: {list(prod.failed.items())[:5]}"
    assert len(prod.acked) == prod.sent
    log = read_log_until(cluster.bootstrap, topic, range(3),
                         lambda got: sum(len(v) for v in got.values()) >= prod.sent)
    check_acked(log, prod.acked, "rolling restart")
    assert sum(len(v) for v in log.values()) == prod.sent, "records in the log that were never acknowledged"


def test_sigterm_of_a_leader_under_acks_all_load_exits_and_hands_over_promptly(cluster):
    """SIGTERM of each node in turn while an acks=all idempotent producer sends ~500 records/s to a 3-partition RF 3 topic that node helps lead: each exits 0 within 5 s and no record waits more than 5 s for its acknowledgement, i.e. a produce request parked for the ISR when controlled shutdown moves leadership away is answered (Kafka completes it with NOT_LEADER_OR_FOLLOWER and the client retries on the new leader) instead of being held until the broker's shutdown drain gives up."""
    topic = "rep-sigterm-handover"
    create(cluster, topic, 3, min_isr=2)
    prod = SteadyProducer(cluster.bootstrap, topic, [0, 1, 2], "handover", rate=500).start()
    stops = {}
    try:
        prod.wait_acked(300)
        for n in cluster:
            t0 = time.monotonic()
            code = n.stop()
            stops[n.node_id] = (code, round(time.monotonic() - t0, 2))
            n.spawn()
            n.wait_healthy()
            assert wait_for(lambda: fully_replicated(cluster), 40, 0.1), \
                {m.node_id: view(m, topic) for m in cluster if m.is_running()}
            prod.wait_acked(len(prod.acked) + 200)
    finally:
        prod.stop()
    slowest = prod.slowest()
    print(f"(exit code, SIGTERM to exit s) per node: {stops}; slowest delivery per partition {slowest}")
    assert not prod.failed, f"{len(prod.failed)} deliveries failed: {list(prod.failed.items())[:5]}"
    assert all(code == 0 for code, _ in stops.values()), stops
    assert all(secs < 5 for _, secs in stops.values()), f"SIGTERM to exit took too long: {stops}"
    assert all(secs < 5 for secs, _ in slowest.values()), f"acknowledgements waited too long: {slowest}"


# ------------------------------------------------------------------ 4. truncation of a deposed leader


def test_a_deposed_leader_truncates_records_only_it_had(cluster):
    """RF 3, min.insync.replicas=1: records committed with acks=all; both followers frozen (SIGSTOP) and records written acks=1 to the leader alone; the leader frozen and the followers thawed: one of them becomes leader (bigger epoch) and takes more acks=all records; the old leader thawed rejoins the ISR and, made leader again by a preferred election, serves the committed records and the new leader's, at consecutive offsets, without the acks=1 records only it had (OffsetForLeaderEpoch truncation), and no offset twice."""
    topic = "rep-truncate"
    before = create(cluster, topic, 1, min_isr=1)[0]
    leader = cluster[before["leader"]]
    followers = [n for n in cluster if n is not leader]
    assert replica_ids(before)[0] == leader.node_id, before  # the preferred leader
    committed = [f"committed-{i}".encode() for i in range(50)]
    clients.produce_all(cluster.bootstrap, topic, [{"value": v, "partition": 0} for v in committed], acks="all")
    lonely = [f"lonely-{i}".encode() for i in range(20)]
    later = [f"later-{i}".encode() for i in range(30)]
    try:
        for n in followers:
            os.kill(n.proc.pid, signal.SIGSTOP)
        # A follower's fetch still parked at the leader (replica.fetch.wait.max.ms, 500 ms) would
        # carry the next records into its socket buffer, to be appended when it thaws: let the
        # parked fetches answer empty first, so the acks=1 records reach no follower.
        time.sleep(2)
        offsets = clients.produce_all(leader.kafka_addr, topic, [{"value": v, "partition": 0} for v in lonely],
                                      acks=1)
        assert offsets == [(0, 50 + i) for i in range(20)], offsets
        os.kill(leader.proc.pid, signal.SIGSTOP)
        for n in followers:
            os.kill(n.proc.pid, signal.SIGCONT)
        t0 = time.monotonic()
        after = new_leader(followers, topic, 0, leader.node_id, before["leader_epoch"], timeout_s=30)
        print(f"leader {leader.node_id} frozen: new leader {after and after['leader']} epoch "
              f"{after and after['leader_epoch']} isr {after and after['isr']} after {time.monotonic() - t0:.2f} s")
        assert after, {n.node_id: view(n, topic) for n in followers}
        offsets = clients.produce_all(",".join(n.kafka_addr for n in followers), topic,
                                      [{"value": v, "partition": 0} for v in later], acks="all")
        assert offsets == [(0, 50 + i) for i in range(30)], offsets
    finally:
        for n in cluster:
            cont(n)
    t0 = time.monotonic()
    assert wait_for(lambda: in_isr(cluster, topic, [0], leader.node_id), 40), \
        {n.node_id: view(n, topic) for n in cluster}
    print(f"old leader {leader.node_id} back in the ISR {time.monotonic() - t0:.2f} s after SIGCONT")
    election = clients.elect_preferred(cluster.bootstrap, topic, [0])
    assert election == {0: None}, election
    assert wait_for(lambda: all((view(n, topic) or {}).get("leader") == leader.node_id for n in cluster), 15), \
        {n.node_id: view(n, topic) for n in cluster}
    want = list(enumerate(committed + later))
    log = read_log_until(cluster.bootstrap, topic, [0], lambda got: len(got[0]) >= len(want))[0]
    assert not set(lonely) & {v for _, v in log}, [(o, v) for o, v in log if v in set(lonely)]
    assert log == want, log


# ------------------------------------------------------------------ 5. group coordinator failover


def test_kill9_of_the_group_coordinator_keeps_committed_offsets(cluster):
    """A confluent-kafka group consumer of a 3-partition RF 3 topic, committing synchronously after every batch, goes on after kill -9 of its group coordinator (the leader of the group's __consumer_offsets partition, RF 3): another broker becomes coordinator, the committed offsets read back after every commit never go back, records read again are only ones after the last commit before the kill, and every record is consumed, the final commit at the end of every partition."""
    topic, group, per = "rep-group", "rep-group-g1", 300
    create(cluster, topic, 3, min_isr=2)
    clients.produce_all(cluster.bootstrap, topic,
                        [{"value": f"{p}-{i}".encode(), "partition": p} for p in range(3) for i in range(per)],
                        acks="all")
    coordinator = find_coordinator(cluster[1], group, 0)
    assert all(find_coordinator(n, group, 0) == coordinator for n in cluster)
    victim = cluster[coordinator]
    survivors = [n for n in cluster if n is not victim]
    tps = [TopicPartition(topic, p) for p in range(3)]
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "socket.timeout.ms": 10000})
    seen = collections.Counter()
    last = {p: -1 for p in range(3)}
    at_kill = None
    commit_errors, committed_errors, history = [], [], []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 90
        while (len(seen) < 3 * per or min(last.values()) < per) and time.monotonic() < deadline:
            msgs = c.consume(30, 0.5)
            for m in msgs:
                if m.error():
                    assert not m.error().fatal(), m.error()
                    continue
                seen[(m.partition(), m.offset())] += 1
            if at_kill is None and len(seen) >= 3 * per // 2:
                at_kill = dict(last)
                victim.kill9()
                t_kill = time.monotonic()
                print(f"kill -9 of group coordinator {coordinator} after {len(seen)} records, committed {at_kill}")
            if not c.assignment():
                continue
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:
                if e.args[0].code() != KafkaError._NO_OFFSET:
                    commit_errors.append(e.args[0])
                    continue
            try:
                got = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
            except KafkaException as e:
                committed_errors.append(e.args[0])
                continue
            for p in range(3):
                if got[p] >= 0 or last[p] >= 0:
                    assert got[p] >= last[p], f"committed offset of partition {p} went back: {last} -> {got}"
            history.append(got)
            last = {p: max(last[p], got[p]) for p in range(3)}
    finally:
        c.close()
    print(f"commit errors {commit_errors[:5]}, committed() errors {committed_errors[:5]}, "
          f"{len(history)} committed() reads, last {last}")
    assert at_kill is not None, "the coordinator was never killed"
    assert sorted(seen) == [(p, o) for p in range(3) for o in range(per)], f"consumed {len(seen)} of {3 * per}"
    again = sorted(k for k, n in seen.items() if n > 1)
    assert all(o >= max(at_kill[p], 0) for p, o in again), (at_kill, again[:10])
    assert last == {p: per for p in range(3)}, last
    new_coordinator = find_coordinator(survivors[0], group, 0)
    assert new_coordinator in {n.node_id for n in survivors}, new_coordinator
    print(f"{len(again)} records read twice; new coordinator {new_coordinator} "
          f"({time.monotonic() - t_kill:.1f} s after the kill)")
    # The offsets as the new coordinator has them, through an admin client.
    from confluent_kafka import ConsumerGroupTopicPartitions
    res = clients.admin_results(",".join(n.kafka_addr for n in survivors), "list_consumer_group_offsets",
                                [ConsumerGroupTopicPartitions(group, tps)])
    err, listed = res[group]
    assert err is None, err
    assert {tp.partition: tp.offset for tp in listed.topic_partitions} == {p: per for p in range(3)}, listed


# ------------------------------------------------------------------ 6. transactions across a leader failover


def test_transactions_commit_across_a_kill9_of_the_partition_leader(cluster):
    """A transactional confluent-kafka producer commits transactions of 20 records to an RF 3 topic; between two of them the partition leader (not the transaction coordinator) is killed with kill -9; the following transactions commit (retrying what the client calls retriable; one it says must abort is aborted and sent again), and a read_committed consumer sees every committed transaction's records exactly once, in order, and none of an aborted one."""
    topic = "rep-txn"
    before = create(cluster, topic, 1, min_isr=2)[0]
    leader = before["leader"]
    find_coordinator(cluster[1], "rep-txn-probe", 1)  # __transaction_state exists from here on

    def state_leaders():
        for t in cluster[1].cluster_view()["topics"]:
            if t["name"] == "__transaction_state":
                return {p["partition"]: p["leader"] for p in t["partitions"]}
        return None
    state = wait_for(state_leaders, 10)
    txn_id = next(t for t in (f"rep-txn-{i}" for i in range(1000))
                  if state[(java_string_hash(t) & 0x7FFFFFFF) % len(state)] not in (leader, -1))
    p = clients.Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": txn_id, "linger.ms": 5,
                          "message.timeout.ms": 30000, "socket.timeout.ms": 10000})
    p.init_transactions(30)
    coordinator = find_coordinator(cluster[1], txn_id, 1)
    assert coordinator != leader, (coordinator, leader)
    print(f"partition leader {leader}, transaction coordinator {coordinator}")

    committed, aborted, retries = [], [], []
    for t in range(10):
        if t == 4:
            cluster[leader].kill9()
            t0 = time.monotonic()
        for attempt in range(3):  # an aborted transaction is sent again under new values
            values = [f"tx{t}.{attempt}-{i}".encode() for i in range(20)]
            p.begin_transaction()
            for v in values:
                p.produce(topic, value=v, partition=0)
            outcome = None
            for _ in range(10):
                try:
                    p.commit_transaction(60)
                    outcome = "commit"
                    break
                except KafkaException as e:
                    err = e.args[0]
                    retries.append((t, attempt, err))
                    if err.retriable():
                        continue
                    if err.txn_requires_abort():
                        p.abort_transaction(60)
                        outcome = "abort"
                        break
                    raise
            assert outcome, f"transaction {t} neither committed nor aborted: {retries}"
            (committed if outcome == "commit" else aborted).append(values)
            if outcome == "commit":
                break
        else:
            raise AssertionError(f"transaction {t} aborted 3 times: {retries}")
        if t == 4:
            print(f"first transaction after the kill ended {time.monotonic() - t0:.2f} s after it")
    print(f"committed {len(committed)}, aborted {len(aborted)}, commit errors {retries}")
    survivors = [n for n in cluster if n.node_id != leader]
    after = view(survivors[0], topic)
    assert after["leader"] not in (-1, leader) and after["leader_epoch"] > before["leader_epoch"], after
    assert len(committed) == 10, (len(committed), retries)
    want = [v for values in committed for v in values]
    log = read_log_until(cluster.bootstrap, topic, [0], lambda got: len(got[0]) >= len(want),
                         isolation="read_committed")[0]
    assert [v for _, v in log] == want, ([v for _, v in log][:30], len(log), len(want))
    p.flush(10)
