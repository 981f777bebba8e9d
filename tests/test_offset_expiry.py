"""Offset expiry (offsets.retention.minutes, KIP-211; fjord.offsets.retention.ms
for seconds-scale tests): committed offsets of a standalone group expire after
their commit, those of a consumer group only once it has been empty for the
retention, and expired offsets stay gone after kill -9 — seen through
confluent-kafka's committed() and ListGroups."""

import time

from confluent_kafka import TopicPartition

from clients import admin, consumer, create_topic, produce_all

RETENTION_ENV = {
    "FJORD_FJORD_OFFSETS_RETENTION_MS": "1500",
    "FJORD_OFFSETS_RETENTION_CHECK_INTERVAL_MS": "200",
    "FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS": "100",
}


def committed(bootstrap, group, topic):
    c = consumer(bootstrap, **{"group.id": group})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def listed_groups(bootstrap):
    a = admin(bootstrap)
    return {g.group_id for g in a.list_consumer_groups(request_timeout=10).result().valid}


def wait_until(pred, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.3)
    return False


def test_standalone_group_offsets_expire_after_commit(broker_factory, topic_name):
    """A group that only commits (assign(), never joins) loses its offset once the retention has passed since the commit, is no longer listed, and the expiry survives kill -9."""
    b = broker_factory(shards=1, env=RETENTION_ENV)
    create_topic(b.bootstrap, topic_name)
    c = consumer(b.bootstrap, **{"group.id": "standalone"})
    try:
        c.assign([TopicPartition(topic_name, 0)])
        c.commit(offsets=[TopicPartition(topic_name, 0, 7)], asynchronous=False)
    finally:
        c.close()
    assert committed(b.bootstrap, "standalone", topic_name) == 7
    assert wait_until(lambda: committed(b.bootstrap, "standalone", topic_name) < 0), "the offset never expired"
    assert wait_until(lambda: "standalone" not in listed_groups(b.bootstrap)), "the emptied group is still listed"
    b.kill9()
    b.start()
    assert committed(b.bootstrap, "standalone", topic_name) < 0


def test_consumer_group_offsets_kept_while_members_live(broker_factory, topic_name):
    """A consumer group's offsets outlive the retention while a member is active (except for a topic no member subscribes to, which expires after its commit); once the last member leaves they expire after the retention, counted from when the group became empty."""
    b = broker_factory(shards=1, env=RETENTION_ENV)
    create_topic(b.bootstrap, topic_name)
    produce_all(b.bootstrap, topic_name, [{"value": b"m%d" % i} for i in range(5)])
    c = consumer(b.bootstrap, **{"group.id": "live", "auto.offset.reset": "earliest", "enable.partition.eof": False,
                                 "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    try:
        c.subscribe([topic_name])
        got = 0
        deadline = time.monotonic() + 30
        while got < 5 and time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is not None and not m.error():
                got += 1
        assert got == 5
        c.commit(asynchronous=False)
        # An offset for a topic no member subscribes to expires even in a Stable group.
        other = topic_name + "-other"
        create_topic(b.bootstrap, other)
        c.commit(offsets=[TopicPartition(other, 0, 3)], asynchronous=False)
        assert committed(b.bootstrap, "live", other) == 3
        # Three retention periods with a live member: the subscribed topic's offset stays.
        end = time.monotonic() + 4.5
        while time.monotonic() < end:
            c.poll(0.2)
        assert committed(b.bootstrap, "live", topic_name) == 5
        assert committed(b.bootstrap, "live", other) < 0
    finally:
        c.close()
    assert wait_until(lambda: committed(b.bootstrap, "live", topic_name) < 0), "offsets of the empty group never expired"
