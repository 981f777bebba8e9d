"""The admin APIs Kafka's Java tools and UIs send (kafka-log-dirs.sh,
kafka-metadata-quorum.sh, kafka-reassign-partitions.sh --list, kafka-configs.sh
for users and clients, Kafdrop's and kafka-ui's ACL probe), driven by
kafka-python 3's KafkaAdminClient (which mirrors the Java AdminClient's calls)
against the real binary, on one shared two-shard broker."""

import pytest
from confluent_kafka import Producer
from kafka import KafkaAdminClient
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter, ResourceType
from kafka.errors import SecurityDisabledError

from clients import create_topic


@pytest.fixture(scope="module")
def admin_broker(tmp_path_factory):
    from conftest import Broker
    d = tmp_path_factory.mktemp("admin-apis")
    b = Broker(d / "data", d, shards=2)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def admin(admin_broker):
    a = KafkaAdminClient(bootstrap_servers=admin_broker.bootstrap, request_timeout_ms=15000)
    yield a
    a.close()


def produce(bootstrap, topic, n, size=1000):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=b"v" * size, partition=i % 2)
    assert p.flush(30) == 0


def test_describe_log_dirs_reports_the_data_dir_every_replica_size_and_the_disk(admin_broker, admin):
    """DescribeLogDirs: one log dir (the data dir), both partitions of a topic (on two shards) with sizes that cover what was produced, and the disk's total and usable bytes."""
    create_topic(admin_broker.bootstrap, "logdirs", partitions=2)
    produce(admin_broker.bootstrap, "logdirs", 200)
    [broker] = admin.describe_log_dirs()
    [log_dir] = broker["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == str(admin_broker.data_dir.resolve())
    topics = {t["name"]: t for t in log_dir["topics"]}
    parts = {p["partition_index"]: p for p in topics["logdirs"]["partitions"]}
    assert sorted(parts) == [0, 1]
    for p in parts.values():
        assert p["partition_size"] >= 100 * 1000, p
        assert p["offset_lag"] == 0 and p["is_future_key"] is False
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]


def test_describe_log_dirs_for_named_partitions_gives_only_those(admin_broker, admin):
    """A topic-partition list narrows the answer to those replicas (Kafka: a null list means all)."""
    create_topic(admin_broker.bootstrap, "logdirs-narrow", partitions=2)
    [broker] = admin.describe_log_dirs(topic_partitions={"logdirs-narrow": [1]})
    [log_dir] = broker["log_dirs"]
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in log_dir["topics"]] == [("logdirs-narrow", [1])]


def test_describe_metadata_quorum_names_this_node_as_leader_and_voter(admin_broker, admin):
    """DescribeQuorum: __cluster_metadata partition 0 led by this node (the only voter), with a positive high watermark and the leader's log end at or past it."""
    q = admin.describe_metadata_quorum()
    [topic] = q["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [p] = topic["partitions"]
    assert p["error"] is None, p
    voters = {v["replica_id"]: v for v in p["current_voters"]}
    assert p["leader_id"] in voters, p
    assert p["leader_epoch"] >= 1
    assert p["high_watermark"] > 0
    assert voters[p["leader_id"]]["log_end_offset"] >= p["high_watermark"]
    assert voters[p["leader_id"]]["last_caught_up_timestamp"] > 0
    assert p["observers"] == []


def test_list_partition_reassignments_is_empty(admin_broker, admin):
    """No partition move is ever in progress (moves do not exist yet): an empty answer, for all partitions and for named ones."""
    create_topic(admin_broker.bootstrap, "reassign", partitions=1)
    assert admin.list_partition_reassignments() == {}
    assert admin.list_partition_reassignments(topic_partitions={"reassign": [0]}) == {}


def test_acls_are_security_disabled_as_on_kafka_without_an_authorizer(admin):
    """DescribeAcls answers SECURITY_DISABLED (what Kafdrop and kafka-ui expect from a broker without an authorizer), not an empty list."""
    f = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                  resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
    with pytest.raises(SecurityDisabledError) as e:
        admin.describe_acls(f)
    assert "No Authorizer" in str(e.value)


def test_scram_credentials_are_none_and_a_named_user_is_not_found(admin):
    """DescribeUserScramCredentials: no users have credentials; a named user gets RESOURCE_NOT_FOUND with Kafka's message."""
    assert admin.describe_user_scram_credentials() == {}
    r = admin.describe_user_scram_credentials(["alice"])
    assert r["alice"]["credential_infos"] == []
    assert "does not exist" in r["alice"]["error"]


def test_client_quotas_are_none(admin):
    """DescribeClientQuotas (kafka-configs.sh --describe --entity-type clients): no entity has a quota, error 0."""
    from kafka.protocol.admin.client_quotas import DescribeClientQuotasRequest
    req = DescribeClientQuotasRequest(components=[], strict=False)

    async def send():
        return await admin._manager.send(req)
    resp = admin._manager.run(send)
    assert resp.error_code == 0
    assert list(resp.entries) == []


def test_broker_configs_name_the_kafka_protocol_version_kafka_ui_reads(admin_broker):
    """DescribeConfigs(BROKER) reports inter.broker.protocol.version (kafka-ui derives the cluster version, hence IncrementalAlterConfigs and quotas, from its major.minor) and delete.topic.enable; a topic's configs include min.insync.replicas (kafka-topics --under-min-isr-partitions reads it)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType as RT
    a = AdminClient({"bootstrap.servers": admin_broker.bootstrap})
    [f] = a.describe_configs([ConfigResource(RT.BROKER, "1")]).values()
    configs = f.result(15)
    ibp = configs["inter.broker.protocol.version"].value
    major, minor = (int(x) for x in ibp.split("-")[0].split(".")[:2])
    assert (major, minor) >= (2, 6), ibp
    assert configs["delete.topic.enable"].value == "true"
    create_topic(admin_broker.bootstrap, "configs-topic", partitions=1)
    [f] = a.describe_configs([ConfigResource(RT.TOPIC, "configs-topic")]).values()
    assert f.result(15)["min.insync.replicas"].value == "1"
