"""The admin HTTP JSON API (/v1/...) against the real binary with real data
(confluent-kafka produces and a group commits): brokers, topics with the
(broker, shard) of every replica, offsets and configs, messages in each
format, groups with lag, this node's settings, clear errors, writes refused
unless enabled, and a controlled shutdown over HTTP that ends the process
with exit code 0."""

import json
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clients import create_topic

TOPIC = "api-orders"
GROUP = "api-group"
MESSAGES = 10


def http(broker, path, method="GET", body=None):
    """(status, parsed JSON body) of one admin request."""
    req = urllib.request.Request(f"http://{broker.admin_addr}{path}", method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def api_broker(tmp_path_factory):
    """A two-shard broker holding a two-partition topic of 10 keyed JSON
    messages, and a group that committed offset 3 on partition 0."""
    from conftest import Broker
    d = tmp_path_factory.mktemp("admin-api")
    b = Broker(d / "data", d, shards=2)
    b.start()
    create_topic(b.bootstrap, TOPIC, partitions=2, config={"retention.ms": "3600000"})
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(MESSAGES):
        p.produce(TOPIC, key=f"key-{i}", value=json.dumps({"n": i}), partition=i % 2,
                  headers=[("source", b"test")])
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(TOPIC, 0, 3)], asynchronous=False)
    c.close()
    yield b
    b.stop()


def test_given_a_broker_when_listing_brokers_should_show_it_with_its_shards(api_broker):
    """/v1/brokers lists this broker (node 1, two shards, the controller, alive) and /v1/brokers/1 its replicas by shard."""
    status, doc = http(api_broker, "/v1/brokers")
    assert status == 200
    [b] = doc["brokers"]
    assert (b["node_id"], b["shard_count"], b["is_controller"], b["alive"]) == (1, 2, True, True)
    assert doc["controller_id"] == 1 and doc["cluster_id"]
    status, one = http(api_broker, "/v1/brokers/1")
    assert status == 200
    placed = {(r["topic"], r["partition"]): r for r in one["replicas"]}
    assert {placed[(TOPIC, p)]["shard"] for p in (0, 1)} <= {0, 1}
    assert placed[(TOPIC, 0)]["leader"] is True
    assert http(api_broker, "/v1/brokers/7")[0] == 404
    assert http(api_broker, "/v1/brokers/x")[0] == 400


def test_given_a_topic_with_data_when_described_should_show_placement_offsets_size_and_configs(api_broker):
    """/v1/topics lists the topic; /v1/topics/NAME gives leader, replicas with shards, ISR, offsets 0..5, a size and its configs."""
    status, doc = http(api_broker, "/v1/topics")
    assert status == 200
    topics = {t["name"]: t for t in doc["topics"]}
    assert topics[TOPIC]["partition_count"] == 2 and topics[TOPIC]["replication_factor"] == 1
    status, t = http(api_broker, f"/v1/topics/{TOPIC}")
    assert status == 200
    for p in t["partitions"]:
        assert p["leader"] == 1 and p["isr"] == [1]
        [r] = p["replicas"]
        assert r["node_id"] == 1 and r["shard"] in (0, 1) and r["shard"] == p["leader_shard"]
        assert (p["log_start_offset"], p["high_watermark"], p["messages"]) == (0, 5, 5)
        assert p["size_bytes"] > 0
    configs = {c["name"]: c for c in t["configs"]}
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    status, err = http(api_broker, "/v1/topics/no-such-topic")
    assert status == 404 and "no-such-topic" in err["error"]


def test_given_messages_when_browsed_should_show_key_value_headers_in_each_format(api_broker):
    """/messages from an offset, from the end, and by timestamp, as text, JSON (pretty), hex and base64."""
    status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=0&offset=1&limit=2")
    assert status == 200
    assert [m["offset"] for m in doc["messages"]] == [1, 2]
    m = doc["messages"][0]
    assert m["key"] == "key-2" and json.loads(m["value"]) == {"n": 2}
    assert m["headers"] == [{"key": "source", "value": "test"}]
    assert m["timestamp_ms"] > 0
    status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=1&from=end&limit=2&format=json")
    assert [m["offset"] for m in doc["messages"]] == [3, 4]
    assert doc["messages"][1]["value"] == '{\n  "n": 9\n}'
    status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=0&offset=0&limit=1&format=hex")
    assert doc["messages"][0]["key"] == b"key-0".hex()
    status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=0&offset=0&limit=1&format=base64")
    assert doc["messages"][0]["key"] == "a2V5LTA="
    status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=0&timestamp=0&limit=50")
    assert status == 200 and [m["offset"] for m in doc["messages"]] == [0, 1, 2, 3, 4]
    future_ms = int(time.time() * 1000) + 3_600_000
    status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=0&timestamp={future_ms}")
    assert status == 200 and doc["messages"] == []


def test_given_bad_message_parameters_when_browsing_should_answer_400_or_404(api_broker):
    """Bad numbers, formats and limits are 400; an unknown partition or topic is 404."""
    for q in ["partition=x", "limit=0", "limit=100000", "format=xml", "offset=-1", "from=middle", "offset=1&from=end"]:
        status, doc = http(api_broker, f"/v1/topics/{TOPIC}/messages?{q}")
        assert status == 400, q
        assert doc["error"]
    assert http(api_broker, f"/v1/topics/{TOPIC}/messages?partition=9")[0] == 404
    assert http(api_broker, "/v1/topics/nope/messages")[0] == 404


def test_given_a_group_with_commits_when_described_should_show_lag_per_partition(api_broker):
    """/v1/groups lists the group; /v1/groups/ID shows committed 3, end 5 and lag 2 on partition 0; an unknown group is 404."""
    status, doc = http(api_broker, "/v1/groups")
    assert status == 200
    assert GROUP in [g["group_id"] for g in doc["groups"]]
    status, g = http(api_broker, f"/v1/groups/{GROUP}")
    assert status == 200
    assert g["state"] == "Empty" and g["members"] == []
    [o] = [o for o in g["offsets"] if o["topic"] == TOPIC and o["partition"] == 0]
    assert (o["committed_offset"], o["end_offset"], o["lag"]) == (3, 5, 2)
    assert g["total_lag"] == 2
    assert http(api_broker, "/v1/groups/no-such-group")[0] == 404


def test_given_a_node_when_config_is_read_should_show_settings_by_their_help_names(api_broker):
    """/v1/config names settings as `fjord --help` does, with their effective values."""
    status, doc = http(api_broker, "/v1/config")
    assert status == 200
    s = doc["settings"]
    assert s["shards"] == "2" and s["node_id"] == "1"
    assert s["admin_api_writes_enabled"] == "false"
    assert s["kafka_addr"] == api_broker.kafka_addr
    assert "log.segment.bytes" in s


def test_given_writes_disabled_when_posting_should_refuse_with_403(api_broker):
    """By default the write endpoints answer 403 and the broker keeps running; GET on them is 405, unknown paths 404."""
    status, doc = http(api_broker, "/v1/node/controlled_shutdown", method="POST", body=b"")
    assert status == 403 and "disabled" in doc["error"]
    status, doc = http(api_broker, f"/v1/partitions/{TOPIC}/0/move", method="POST", body=b'{"to": [1]}')
    assert status == 403
    assert http(api_broker, "/v1/node/controlled_shutdown")[0] == 405
    assert http(api_broker, "/v1/nothing-here")[0] == 404
    assert api_broker.is_running() and api_broker.health_status() == 200


def test_given_throughput_when_polled_should_count_bytes_in_and_out(api_broker):
    """/v1/throughput totals what was produced and fetched on this node."""
    status, doc = http(api_broker, "/v1/throughput")
    assert status == 200
    assert doc["bytes_in_total"] > 0 and doc["messages_in_total"] >= MESSAGES
    assert doc["time_ms"] > 0


def test_given_writes_enabled_when_controlled_shutdown_is_posted_should_exit_cleanly(broker_factory):
    """With --admin-api-writes-enabled, a move answers 501 and POST /v1/node/controlled_shutdown answers 202; the process then exits 0."""
    b = broker_factory(extra_args=["--admin-api-writes-enabled"])
    status, doc = http(b, "/v1/partitions/t/0/move", method="POST", body=b"{}")
    assert status == 501 and "not implemented" in doc["error"]
    status, doc = http(b, "/v1/node/controlled_shutdown", method="POST", body=b"")
    assert status == 202
    assert b.proc.wait(timeout=30) == 0
