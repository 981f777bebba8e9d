"""kafkajs consumer groups (subscribe/run/commitOffsets, admin describeGroups/fetchOffsets)
and group bad input on the wire: unknown group, wrong generation, stale member and a commit
for a missing partition get Kafka's error codes, never a hang."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import kafkawire as kw
from clients import create_topic, js_ok, produce_all

GROUP_ENV = {"FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS": "100"}


@pytest.fixture(params=[1, 2], ids=["1shard", "2shards"])
def gbroker(request, broker_factory):
    return broker_factory(shards=request.param, env=GROUP_ENV)


def test_kafkajs_group_consumer_commits_and_admin_sees_it(gbroker, topic_name):
    """A kafkajs consumer (subscribe + run, autoCommit false, commitOffsets) reads all records; fetchOffsets shows the commits, describeGroups the group."""
    create_topic(gbroker.bootstrap, topic_name, partitions=3)
    produce_all(gbroker.bootstrap, topic_name, [{"value": f"v{i}".encode(), "partition": i % 3} for i in range(30)])
    group = "js-" + topic_name
    r = js_ok("groupConsume", gbroker.bootstrap, topic=topic_name, groupId=group, count=30, timeoutMs=30000)
    got = sorted((x["partition"], int(x["offset"])) for x in r["records"])
    assert got == sorted((p, o) for p in range(3) for o in range(10))
    offsets = {o["partition"]: int(o["offset"]) for t in r["offsets"] for o in t["partitions"]}
    assert offsets == {0: 10, 1: 10, 2: 10}
    groups = r["described"]["groups"]
    assert groups[0]["groupId"] == group and groups[0]["state"] == "Stable"
    assert groups[0]["protocolType"] == "consumer" and len(groups[0]["members"]) == 1
    # A second run of the same group starts after the commits: nothing left to read.
    again = js_ok("groupConsume", gbroker.bootstrap, topic=topic_name, groupId=group, count=1, timeoutMs=4000)
    assert again["records"] == []


def raw(port, api_key, version, body, corr=5):
    with kw.RawConnection("127.0.0.1", port) as conn:
        conn.send(kw.frame(kw.request_header_v1(api_key, version, corr) + body))
        return kw.Reader(conn.recv_response(corr))


def heartbeat_v0(port, group, generation, member):
    return raw(port, 12, 0, kw.string(group) + kw.i32(generation) + kw.string(member)).i16()


def join_v0(port, group, member, session_ms=6000, protocol_type="consumer"):
    protocols = kw.array([kw.string("range") + kw.bytes_field(b"\x00\x00\x00\x00\x00\x00")])
    body = kw.string(group) + kw.i32(session_ms) + kw.string(member) + kw.string(protocol_type) + protocols
    r = raw(port, 11, 0, body)
    return r.i16(), r.i32(), r.string(), r.string(), r.string()  # error, generation, protocol, leader, member id


def find_coordinator_v0(port, group):
    r = raw(port, 10, 0, kw.string(group))
    return r.i16()


def test_group_bad_input_gets_kafka_error_codes(gbroker, topic_name):
    """Heartbeat for an unknown group/member is UNKNOWN_MEMBER_ID, a wrong generation ILLEGAL_GENERATION, a too small session INVALID_SESSION_TIMEOUT, an empty protocol type INCONSISTENT_GROUP_PROTOCOL, an empty group id INVALID_GROUP_ID, and a commit for a missing partition UNKNOWN_TOPIC_OR_PARTITION."""
    port = gbroker.kafka_port
    group = "bad-" + topic_name
    assert find_coordinator_v0(port, group) == 0
    assert heartbeat_v0(port, group, 1, "nobody") == 25
    err, generation, protocol, leader, member_id = join_v0(port, group, "")
    assert err == 0 and generation == 1 and protocol == "range" and leader == member_id
    assert heartbeat_v0(port, group, generation + 5, member_id) == 22
    assert heartbeat_v0(port, group, generation, "stale-member") == 25
    assert join_v0(port, group, "", session_ms=10)[0] == 26
    assert join_v0(port, "other-" + group, "", protocol_type="")[0] == 23
    assert join_v0(port, "", "")[0] == 24
    create_topic(gbroker.bootstrap, topic_name, partitions=1)
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": "commit-" + topic_name, "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as e:
            c.commit(offsets=[TopicPartition(topic_name, 7, 1)], asynchronous=False)
        assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
