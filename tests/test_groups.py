"""Consumer groups with real clients: confluent-kafka members split partitions,
take over from dead members, commit and resume, survive broker restarts."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

import kafkawire as kw
from clients import admin, create_topic, produce_all

TESTS_DIR = Path(__file__).resolve().parent
SESSION_MS = 6000
# Brokers for these tests wait only briefly for more members before a first rebalance.
GROUP_ENV = {"FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS": "100"}


@pytest.fixture(params=[1, 2], ids=["1shard", "2shards"])
def gbroker(request, broker_factory):
    return broker_factory(shards=request.param, env=GROUP_ENV)


@pytest.fixture
def gbroker2(broker_factory):
    return broker_factory(shards=2, env=GROUP_ENV)


def member(bootstrap, group, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "socket.timeout.ms": 10000,
    }
    base.update(conf)
    return Consumer(base)


def fill(bootstrap, topic, partitions, per_partition):
    records = [{"value": f"{p}-{i}".encode(), "partition": p} for p in range(partitions) for i in range(per_partition)]
    produce_all(bootstrap, topic, records)
    return {(p, i) for p in range(partitions) for i in range(per_partition)}


def poll_all(consumers, until, timeout_s=30.0):
    """Polls every consumer round-robin until `until(seen)` or the timeout.
    seen[i] is the list of (partition, offset) consumer i read."""
    seen = [[] for _ in consumers]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(seen):
        for i, c in enumerate(consumers):
            m = c.poll(0.05)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            seen[i].append((m.partition(), m.offset()))
    return seen


def total(seen):
    return sum(len(s) for s in seen)


def wait_assignments(consumers, partitions, timeout_s=30.0):
    """Polls until the consumers' assignments are disjoint and cover all partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.05)
        sets = [{tp.partition for tp in c.assignment()} for c in consumers]
        if all(sets) and sum(len(s) for s in sets) == partitions and set().union(*sets) == set(range(partitions)):
            return sets
    raise AssertionError(f"assignments never settled: {[sorted(tp.partition for tp in c.assignment()) for c in consumers]}")


@pytest.mark.parametrize("partitions,members", [(2, 2), (4, 2), (6, 3)])
def test_members_split_partitions_and_read_each_record_once(gbroker, topic_name, partitions, members):
    """N confluent consumers in one group split the topic's partitions with no overlap and read every record exactly once."""
    create_topic(gbroker.bootstrap, topic_name, partitions=partitions)
    consumers = [member(gbroker.bootstrap, "split-" + topic_name) for _ in range(members)]
    try:
        for c in consumers:
            c.subscribe([topic_name])
        # Settle first (waiting polls and would drop records), then produce.
        sets = wait_assignments(consumers, partitions)
        want = fill(gbroker.bootstrap, topic_name, partitions, 10)
        assert all(a.isdisjoint(b) for i, a in enumerate(sets) for b in sets[i + 1:]), sets
        seen = poll_all(consumers, lambda s: total(s) >= len(want))
        flat = [r for s in seen for r in s]
        assert len(flat) == len(want) and set(flat) == want, (
            f"read {len(flat)} records, duplicates or gaps: missing {sorted(want - set(flat))}, "
            f"assignments now {[sorted(tp.partition for tp in c.assignment()) for c in consumers]}, was {sets}")
        for i, s in enumerate(seen):
            assert {p for p, _ in s} <= sets[i], "a member read a partition it was not assigned"
    finally:
        for c in consumers:
            c.close()


def test_new_member_triggers_a_spread_and_leaving_member_hands_over(gbroker2, topic_name):
    """A third member joining a group of two over 6 partitions gets a share; when one closes (LeaveGroup) the rest take all 6."""
    create_topic(gbroker2.bootstrap, topic_name, partitions=6)
    group = "spread-" + topic_name
    a, b = member(gbroker2.bootstrap, group), member(gbroker2.bootstrap, group)
    c = None
    try:
        for x in (a, b):
            x.subscribe([topic_name])
        wait_assignments([a, b], 6)
        c = member(gbroker2.bootstrap, group)
        c.subscribe([topic_name])
        sets = wait_assignments([a, b, c], 6)
        assert all(len(s) == 2 for s in sets), sets
        c.close()
        c = None
        sets = wait_assignments([a, b], 6)
        assert sorted(len(s) for s in sets) == [3, 3], sets
    finally:
        for x in (a, b, c):
            if x is not None:
                x.close()


def spawn_member(bootstrap, topic, group, strategy="range"):
    return subprocess.Popen([sys.executable, str(TESTS_DIR / "group_member.py"), bootstrap, topic, group, str(SESSION_MS), strategy],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


class Lines:
    """Collects a subprocess's JSON lines on a thread."""

    def __init__(self, proc):
        self.items = []
        self.thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self.thread.start()

    def _run(self, proc):
        for line in proc.stdout:
            try:
                self.items.append(json.loads(line))
            except json.JSONDecodeError:
                pass


def test_killed_member_partitions_are_taken_over_within_session_timeout(gbroker2, topic_name):
    """A member killed with SIGKILL (no LeaveGroup) loses its partitions to the survivor within its session timeout plus a rebalance."""
    create_topic(gbroker2.bootstrap, topic_name, partitions=4)
    group = "kill-" + topic_name
    proc = spawn_member(gbroker2.bootstrap, topic_name, group)
    lines = Lines(proc)
    survivor = member(gbroker2.bootstrap, group)
    try:
        survivor.subscribe([topic_name])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            survivor.poll(0.1)
            mine = {tp.partition for tp in survivor.assignment()}
            theirs = next((set(x["assigned"]) for x in reversed(lines.items) if "assigned" in x), set())
            if mine and theirs and mine | theirs == set(range(4)) and not mine & theirs:
                break
        else:
            raise AssertionError(f"no split: survivor {survivor.assignment()}, other {lines.items[-3:]}")
        proc.kill()
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        want = fill(gbroker2.bootstrap, topic_name, 4, 5)
        seen = poll_all([survivor], lambda s: {p for p, _ in s[0]} == set(range(4)), timeout_s=SESSION_MS / 1000 + 20)
        took = time.monotonic() - killed_at
        assert {p for p, _ in seen[0]} == set(range(4)), f"survivor read only {sorted({p for p, _ in seen[0]})} after {took:.1f} s"
        assert took < SESSION_MS / 1000 + 15, f"takeover took {took:.1f} s"
        assert {r for r in seen[0]} <= want
    finally:
        if proc.poll() is None:
            proc.kill()
        survivor.close()


def test_manual_commit_and_resume_and_new_group_reads_everything(gbroker, topic_name):
    """A consumer that commits by hand and restarts in the same group resumes at its committed offset; a new group with earliest reads all."""
    create_topic(gbroker.bootstrap, topic_name, partitions=2)
    fill(gbroker.bootstrap, topic_name, 2, 10)
    group = "resume-" + topic_name
    c = member(gbroker.bootstrap, group)
    c.subscribe([topic_name])
    seen = poll_all([c], lambda s: total(s) >= 20)
    assert total(seen) == 20
    c.commit(offsets=[TopicPartition(topic_name, 0, 6), TopicPartition(topic_name, 1, 3)], asynchronous=False)
    c.close()
    committed = member(gbroker.bootstrap, group).committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 6), (1, 3)]
    c = member(gbroker.bootstrap, group)
    try:
        c.subscribe([topic_name])
        seen = poll_all([c], lambda s: total(s) >= 4 + 7, timeout_s=20)
        assert sorted(seen[0]) == [(0, o) for o in range(6, 10)] + [(1, o) for o in range(3, 10)]
    finally:
        c.close()
    fresh = member(gbroker.bootstrap, "fresh-" + topic_name)
    try:
        fresh.subscribe([topic_name])
        seen = poll_all([fresh], lambda s: total(s) >= 20)
        assert len(set(seen[0])) == 20
    finally:
        fresh.close()


def test_auto_commit_is_stored(gbroker2, topic_name):
    """enable.auto.commit commits consumed positions; the group's committed offsets equal the end of each partition."""
    create_topic(gbroker2.bootstrap, topic_name, partitions=2)
    fill(gbroker2.bootstrap, topic_name, 2, 5)
    group = "auto-" + topic_name
    c = member(gbroker2.bootstrap, group, **{"enable.auto.commit": True, "auto.commit.interval.ms": 200})
    c.subscribe([topic_name])
    poll_all([c], lambda s: total(s) >= 10)
    time.sleep(1.0)
    poll_all([c], lambda s: False, timeout_s=0.5)
    c.close()  # commits the final positions too
    other = member(gbroker2.bootstrap, group)
    try:
        committed = other.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 5), (1, 5)]
    finally:
        other.close()


def test_cooperative_sticky_incremental_rebalance(gbroker2, topic_name):
    """With cooperative-sticky, a second member takes half the partitions and the first keeps the rest it had (incremental, no full revoke)."""
    create_topic(gbroker2.bootstrap, topic_name, partitions=4)
    group = "coop-" + topic_name
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = member(gbroker2.bootstrap, group, **conf)
    b = None
    try:
        a.subscribe([topic_name])
        wait_assignments([a], 4)
        before = {tp.partition for tp in a.assignment()}
        b = member(gbroker2.bootstrap, group, **conf)
        b.subscribe([topic_name])
        sets = wait_assignments([a, b], 4)
        assert sorted(len(s) for s in sets) == [2, 2], sets
        assert sets[0] <= before
        assert a.assignment()[0].topic == topic_name
    finally:
        for x in (a, b):
            if x is not None:
                x.close()


def test_admin_lists_describes_and_fetches_offsets(gbroker2, topic_name):
    """confluent_kafka.admin sees the group in ListGroups (Stable), DescribeGroups (members, assignments) and its committed offsets."""
    create_topic(gbroker2.bootstrap, topic_name, partitions=2)
    fill(gbroker2.bootstrap, topic_name, 2, 4)
    group = "admin-" + topic_name
    c = member(gbroker2.bootstrap, group, **{"client.id": "admin-test-client"})
    try:
        c.subscribe([topic_name])
        poll_all([c], lambda s: total(s) >= 8)
        c.commit(asynchronous=False)
        a = admin(gbroker2.bootstrap)
        listed = a.list_consumer_groups(request_timeout=10).result()
        states = {g.group_id: g.state.name for g in listed.valid}
        assert states.get(group) == "STABLE", states
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result()
        assert desc.state.name == "STABLE"
        assert desc.partition_assignor == "range"
        assert len(desc.members) == 1 and desc.members[0].client_id == "admin-test-client"
        assigned = {(tp.topic, tp.partition) for tp in desc.members[0].assignment.topic_partitions}
        assert assigned == {(topic_name, 0), (topic_name, 1)}
        res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)[group].result()
        assert sorted((tp.partition, tp.offset) for tp in res.topic_partitions) == [(0, 4), (1, 4)]
    finally:
        c.close()


def test_delete_groups_and_offset_delete(gbroker2, topic_name):
    """DeleteGroups refuses a group with members (NON_EMPTY_GROUP) and deletes an empty one; OffsetDelete drops one partition's offset; unknown groups are GROUP_ID_NOT_FOUND."""
    create_topic(gbroker2.bootstrap, topic_name, partitions=2)
    group = "del-" + topic_name
    a = admin(gbroker2.bootstrap)
    c = member(gbroker2.bootstrap, group)
    c.subscribe([topic_name])
    wait_assignments([c], 2)
    c.commit(offsets=[TopicPartition(topic_name, 0, 1), TopicPartition(topic_name, 1, 2)], asynchronous=False)
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group], request_timeout=10)[group].result()
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    c.close()
    # confluent-kafka's Python admin has no OffsetDelete: speak it on the wire (v0).
    top, parts = offset_delete_v0(gbroker2.kafka_port, group, topic_name, [0])
    assert (top, parts) == (0, [(0, 0)])
    assert offset_delete_v0(gbroker2.kafka_port, "no-such-group-" + topic_name, topic_name, [0])[0] == 69  # GROUP_ID_NOT_FOUND
    left = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)[group].result()
    assert sorted((tp.partition, tp.offset) for tp in left.topic_partitions) == [(1, 2)]
    a.delete_consumer_groups([group], request_timeout=10)[group].result()
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group], request_timeout=10)[group].result()
    assert e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    gone = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)[group].result()
    assert all(tp.offset < 0 for tp in gone.topic_partitions)


def offset_delete_v0(port, group, topic, partitions):
    """OffsetDelete v0 by hand; returns (top-level error, [(partition, error)])."""
    body = kw.string(group) + kw.array([kw.string(topic) + kw.array([kw.i32(p) for p in partitions])])
    with kw.RawConnection("127.0.0.1", port) as conn:
        conn.send(kw.frame(kw.request_header_v1(47, 0, 7) + body))
        r = kw.Reader(conn.recv_response(7))
    top = r.i16()
    r.i32()
    out = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            out.append((r.i32(), r.i16()))
    return top, out


@pytest.mark.parametrize("hard", [True, False], ids=["kill9", "sigterm"])
def test_committed_offsets_survive_broker_restart(broker_factory, topic_name, hard):
    """Offsets committed (acknowledged) before a kill -9 or SIGTERM are all there after restart, and the group resumes from them."""
    b = broker_factory(shards=2, env=GROUP_ENV)
    create_topic(b.bootstrap, topic_name, partitions=3)
    fill(b.bootstrap, topic_name, 3, 10)
    groups = [f"restart-{i}-{topic_name}" for i in range(5)]
    for i, g in enumerate(groups):
        c = member(b.bootstrap, g)
        c.commit(offsets=[TopicPartition(topic_name, p, i + p) for p in range(3)], asynchronous=False)
        c.close()
    b.restart(hard=hard)
    for i, g in enumerate(groups):
        c = member(b.bootstrap, g)
        try:
            got = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=20)
            assert [tp.offset for tp in got] == [i + p for p in range(3)], g
        finally:
            c.close()
    c = member(b.bootstrap, groups[4])
    try:
        c.subscribe([topic_name])
        seen = poll_all([c], lambda s: total(s) >= 30 - (4 + 5 + 6))
        assert min(o for p, o in seen[0] if p == 0) == 4
    finally:
        c.close()
