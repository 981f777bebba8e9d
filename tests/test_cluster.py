"""A three-node Fjord cluster (tests/cluster.py): one `fjord serve` per loopback
IP 127.0.0.2-4, a static controller quorum, RF 3 defaults and 2 shards per node,
driven with confluent-kafka, kcat, kafkajs and raw wire frames.

The cluster starts once for the module. Tests that kill a node restart it and
wait until all three brokers are live again before they finish.
"""

import itertools
import json
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

import clients
import kafkawire as kw
from clients import admin_results, consume, js_ok, kcat, produce_all, topic_metadata, wait_for
from cluster import Cluster, ClusterNode, free_ports_on_all, no_marker_warnings, read_partitions, read_properties

NOT_LEADER_OR_FOLLOWER = 6
LEADER_NOT_AVAILABLE = 5
NOT_COORDINATOR = 16
NOT_ENOUGH_REPLICAS = 19
TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
EXIT_TIMEOUT_S = 15

_corr = itertools.count(100)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster")).start_live()
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _attach_logs(request, cluster):
    """A failing test's report carries every node's log (conftest's report hook)."""
    request.node._fjord_brokers = list(cluster)


def raw_create(node, name, partitions=1, rf=3, configs=None, timeout_ms=10000):
    """CreateTopics v4 sent to `node` itself -> (error_code, error_message)."""
    corr = next(_corr)
    body = node.raw(kw.create_topics_v4(corr, [(name, partitions, rf, configs or {})], timeout_ms=timeout_ms),
                    corr, timeout_s=timeout_ms / 1000 + 10)
    return kw.parse_create_topics_v4_response(body)[name]


def raw_produce(node, topic, partition, records, acks=-1):
    corr = next(_corr)
    body = node.raw(kw.produce_v3(corr, topic, partition, kw.record_batch(records), acks=acks), corr)
    return kw.parse_produce_v3_response(body)[(topic, partition)]


def raw_fetch(node, topic, partition, offset=0):
    corr = next(_corr)
    body = node.raw(kw.fetch_v4(corr, topic, partition, offset, max_wait_ms=100), corr)
    return kw.parse_fetch_v4_response(body)[(topic, partition)]


def topic_on_every_node(nodes, name, partitions):
    """True when each node's Metadata lists `name` with `partitions` partitions, each led."""
    for n in nodes:
        t = n.metadata([name])["topics"].get(name)
        if t is None or t["error"] != 0 or sorted(t["partitions"]) != list(range(partitions)):
            return False
        if any(p["leader"] < 0 or p["error"] != 0 for p in t["partitions"].values()):
            return False
    return True


def topic_gone_everywhere(nodes, name):
    for n in nodes:
        t = n.metadata([name])["topics"].get(name)
        if t is not None and t["error"] == 0:
            return False
    return True


def create_rf3(cluster, name, partitions, config=None):
    """Create through the confluent admin client (bootstrap: all three), RF 3, and wait until every node sees it led."""
    err = admin_results(cluster.bootstrap, "create_topics",
                        [NewTopic(name, num_partitions=partitions, replication_factor=3, config=config or {})])[name][0]
    assert err is None, err
    assert wait_for(lambda: topic_on_every_node(cluster, name, partitions), 15), \
        {n.node_id: n.metadata([name]) for n in cluster}


def view_topic(node, name):
    topics = {t["name"]: t for t in node.cluster_view()["topics"]}
    return topics.get(name)


def java_string_hash(s):
    """Java's String.hashCode (over UTF-16 code units) as an unsigned 32-bit value."""
    b = s.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(f">{len(b) // 2}H", b):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h


def restore(cluster, node):
    """Start `node` again if a test left it stopped, then wait for all three brokers."""
    if not node.is_running():
        node.start()
    cluster.wait_all_live()


# ------------------------------------------------------------------ metadata


def test_every_bootstrap_lists_three_brokers_one_cluster_id_and_controller(cluster):
    """confluent-kafka, kcat -L and raw Metadata from each of the three bootstrap addresses list the same three brokers at their advertised addresses, one cluster id (also in each meta.properties) and the active controller."""
    expected = {n.node_id: n.kafka_addr for n in cluster}
    view = cluster[1].cluster_view()
    cluster_id = view["cluster_id"]
    controller = view["controller_id"]
    assert controller in expected, view
    for n in cluster:
        assert n.cluster_view()["cluster_id"] == cluster_id
        props = n.meta_properties()
        assert props.get("node.id") == str(n.node_id) and props.get("cluster.id") == cluster_id, props

        md = topic_metadata(n.kafka_addr)
        assert {b: f"{m.host}:{m.port}" for b, m in md.brokers.items()} == expected, (n, md.brokers)
        assert md.cluster_id == cluster_id, (n, md.cluster_id)
        assert md.controller_id == controller, (n, md.controller_id)

        k = json.loads(kcat("-L", "-J", "-b", n.kafka_addr, "-X", "socket.timeout.ms=10000").stdout)
        assert {b["id"]: b["name"] for b in k["brokers"]} == expected, (n, k["brokers"])
        assert k["controllerid"] == controller, (n, k)

        raw = n.metadata([])
        assert {b: f"{h}:{p}" for b, (h, p, _rack) in raw["brokers"].items()} == expected, (n, raw)
        assert raw["cluster_id"] == cluster_id and raw["controller_id"] == controller, (n, raw)
    assert sorted(b["node_id"] for b in view["brokers"]) == [1, 2, 3]
    assert all(not b["fenced"] and b["shard_count"] == 2 for b in view["brokers"]), view["brokers"]


def test_describe_metadata_quorum_from_any_broker_shows_the_three_voters(cluster):
    """kafka-python's describeMetadataQuorum (DescribeQuorum, forwarded to the active controller) through each broker: the same leader (the controller), three voters with their log ends, caught up, and v2's controller endpoints."""
    from kafka import KafkaAdminClient
    controller = cluster.controller_id()
    for n in cluster:
        a = KafkaAdminClient(bootstrap_servers=n.kafka_addr, request_timeout_ms=15000)
        try:
            q = a.describe_metadata_quorum()
        finally:
            a.close()
        [p] = q["topics"][0]["partitions"]
        assert p["error"] is None, (n, p)
        assert p["leader_id"] == controller, (n, p)
        voters = {v["replica_id"]: v for v in p["current_voters"]}
        assert sorted(voters) == [1, 2, 3], (n, p)
        assert all(v["log_end_offset"] > 0 for v in voters.values()), (n, p)
        assert voters[controller]["log_end_offset"] >= p["high_watermark"] > 0
        endpoints = {node["node_id"]: node["listeners"][0] for node in q["nodes"]}
        assert sorted(endpoints) == [1, 2, 3], q["nodes"]
        assert all(e["port"] == cluster.controller_port for e in endpoints.values()), q["nodes"]


# ------------------------------------------------------------------ clients over the cluster


def test_kafkajs_tutorial_with_three_brokers(cluster):
    """The kafkajs tutorial with all three brokers in `brokers`: createTopics (3 partitions, RF 3), an acks -1 producer sends N keyed messages and a fromBeginning group consumer (eachMessage) reads all N, in key order per partition, and commits N offsets."""
    topic, group, n = "cl-kafkajs-tutorial", "cl-kafkajs-group", 60
    messages = [{"key": clients.b64(f"key-{i % 7}".encode()), "value": clients.b64(f"value-{i}".encode())}
                for i in range(n)]
    res = js_ok("tutorial", cluster.addrs[0], brokers=cluster.addrs, topic=topic, numPartitions=3,
                replicationFactor=3, messages=messages, groupId=group, count=n, timeoutMs=40000,
                driverTimeoutMs=58000, timeout_s=75)
    assert res["created"] is True, res["created"]
    assert sum(1 for _ in res["sent"]) >= 1 and all(r["errorCode"] == 0 for r in res["sent"]), res["sent"]
    records = res["records"]
    assert len(records) == n, f"read {len(records)} of {n}"
    got = [(clients.unb64(r["key"]).decode(), clients.unb64(r["value"]).decode()) for r in records]
    assert sorted(got, key=lambda kv: int(kv[1].split("-")[1])) == \
        [(f"key-{i % 7}", f"value-{i}") for i in range(n)]
    partition_of_key = {}
    for r in records:
        key = clients.unb64(r["key"])
        assert partition_of_key.setdefault(key, r["partition"]) == r["partition"], "one key in two partitions"
    by_partition = {}
    for r in records:
        by_partition.setdefault(r["partition"], []).append(int(r["offset"]))
    for p, offs in by_partition.items():
        assert offs == list(range(len(offs))), (p, offs)
    committed = {p["partition"]: int(p["offset"]) for t in res["offsets"] for p in t["partitions"]}
    assert sum(committed.values()) == n, committed
    t = view_topic(cluster[1], topic)
    assert t is not None and all(len({r["node_id"] for r in p["replicas"]}) == 3 for p in t["partitions"]), t


def test_six_partitions_spread_over_brokers_and_shards_and_round_trip(cluster):
    """A 6-partition RF 3 topic has its leaders on all three brokers and on both shards of each, three replicas on distinct brokers, each led by its first replica, ISR = all three replicas (Kafka: a new partition's ISR is its replica set) in /v1/cluster and Metadata; a confluent producer with all three bootstrap servers writes keyed records that a consumer reads back, every one."""
    topic = "cl-spread"
    create_rf3(cluster, topic, 6)
    t = view_topic(cluster[2], topic)
    assert t is not None, cluster[2].cluster_view()
    leaders = {}
    for p in t["partitions"]:
        replicas = p["replicas"]
        assert len(replicas) == 3 and len({r["node_id"] for r in replicas}) == 3, p
        assert p["leader"] == replicas[0]["node_id"], p
        assert sorted(p["isr"]) == sorted(r["node_id"] for r in replicas), p
        leader_shard = [r["shard"] for r in replicas if r["node_id"] == p["leader"]][0]
        leaders.setdefault(p["leader"], set()).add(leader_shard)
    print("leader shards per broker:", leaders)
    assert set(leaders) == {1, 2, 3}, t["partitions"]
    for broker_id, shards in leaders.items():
        assert shards == {0, 1}, f"broker {broker_id} leads partitions only on shards {shards}: {t['partitions']}"
    md = cluster[3].metadata([topic])["topics"][topic]["partitions"]
    assert {i: p["leader"] for i, p in md.items()} == {p["partition"]: p["leader"] for p in t["partitions"]}
    assert all(sorted(p["isr"]) == sorted(p["replicas"]) == [1, 2, 3] for p in md.values()), md

    records = [{"key": f"k{i % 40}".encode(), "value": f"v{i}".encode()} for i in range(600)]
    delivered = produce_all(cluster.bootstrap, topic, records)
    assert {part for part, _ in delivered} == set(range(6)), "600 records over 40 keys reached only some partitions"
    expected = {(part, off): (r["key"], r["value"]) for (part, off), r in zip(delivered, records)}
    got = {}
    for part in range(6):
        for m in consume(cluster.bootstrap, topic, partition=part):
            got[(m["partition"], m["offset"])] = (m["key"], m["value"])
    assert got == expected


# ------------------------------------------------------------------ controller writes forwarded


def test_controller_writes_to_a_non_controller_broker_are_forwarded(cluster):
    """CreateTopics, CreatePartitions, AlterConfigs and IncrementalAlterConfigs sent raw to brokers that are not the controller take effect on every broker; DeleteTopics sent the same way removes the topic everywhere."""
    controller = cluster.controller_id()
    others = [n for n in cluster if n.node_id != controller]
    assert len(others) == 2, controller
    a, b = others
    topic = "cl-forwarded"

    assert raw_create(a, topic, partitions=2, rf=3) == (0, None), f"CreateTopics to node {a.node_id}"
    assert wait_for(lambda: topic_on_every_node(cluster, topic, 2), 10), \
        {n.node_id: n.metadata([topic]) for n in cluster}
    assert raw_create(b, topic, partitions=2, rf=3)[0] == TOPIC_ALREADY_EXISTS

    corr = next(_corr)
    res = kw.parse_create_partitions_v1_response(b.raw(kw.create_partitions_v1(corr, topic, 4), corr))
    assert res[topic][0] == 0, res
    assert wait_for(lambda: topic_on_every_node(cluster, topic, 4), 10), \
        {n.node_id: n.metadata([topic]) for n in cluster}

    corr = next(_corr)
    res = kw.parse_alter_configs_v1_response(
        a.raw(kw.alter_configs_v1(corr, topic, {"retention.ms": "3600000"}), corr))
    assert res[(kw.RESOURCE_TOPIC, topic)][0] == 0, res

    def retention_on(node):
        res_ = ConfigResource(ResourceType.TOPIC, topic)
        err, entries = admin_results(node.kafka_addr, "describe_configs", [res_])[res_]
        assert err is None, err
        return entries["retention.ms"].value
    for n in cluster:
        assert wait_for(lambda: retention_on(n) == "3600000", 10), (n, retention_on(n))

    corr = next(_corr)
    res = kw.parse_alter_configs_v1_response(
        b.raw(kw.incremental_alter_configs_v0(corr, topic, [("retention.ms", 0, "7200000")]), corr))
    assert res[(kw.RESOURCE_TOPIC, topic)][0] == 0, res
    for n in cluster:
        assert wait_for(lambda: retention_on(n) == "7200000", 10), (n, retention_on(n))

    corr = next(_corr)
    res = kw.parse_delete_topics_v3_response(b.raw(kw.delete_topics_v3(corr, [topic]), corr))
    assert res == {topic: 0}, res
    assert wait_for(lambda: topic_gone_everywhere(cluster, topic), 10), \
        {n.node_id: n.metadata([topic]) for n in cluster}
    assert view_topic(cluster[controller], topic) is None


# ------------------------------------------------------------------ failures


def test_kill9_of_the_controller_elects_another_and_create_topics_works(cluster):
    """After kill -9 of the active controller another node becomes controller (Metadata and /v1/cluster agree), CreateTopics through a surviving broker succeeds, and the killed node rejoins when restarted and sees the new topic."""
    old = cluster.controller_id()
    victim = cluster[old]
    survivors = [n for n in cluster if n.node_id != old]
    attempts = []
    try:
        victim.kill9()
        t0 = time.monotonic()
        created = None
        for i in itertools.count():
            if time.monotonic() - t0 > 30:
                break
            node = survivors[i % 2]
            name = f"cl-after-controller-kill-{i}"
            try:
                err = raw_create(node, name, partitions=1, rf=3, timeout_ms=5000)
            except (OSError, ValueError, kw.ConnectionClosed) as e:
                err = repr(e)
            attempts.append((round(time.monotonic() - t0, 3), node.node_id, name, err))
            if err == (0, None):
                created = name
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        print(f"kill -9 of controller {old} -> CreateTopics succeeded after {elapsed:.3f} s; attempts: {attempts}")
        assert created is not None, f"no CreateTopics succeeded within 30 s: {attempts}"
        assert wait_for(lambda: topic_on_every_node(survivors, created, 1), 10)

        new_ids = {n.node_id: n.metadata([])["controller_id"] for n in survivors}
        assert len(set(new_ids.values())) == 1, new_ids
        new = next(iter(new_ids.values()))
        assert new != old and new in {n.node_id for n in survivors}, new_ids
        assert all(n.cluster_view()["controller_id"] == new for n in survivors)
        # The new controller starts the killed broker's session afresh, so it is fenced a session later.
        fenced = wait_for(lambda: all(old not in n.metadata([])["brokers"] for n in survivors), 10, 0.05)
        print(f"killed controller {old} gone from Metadata {time.monotonic() - t0:.3f} s after the kill")
        assert fenced, {n.node_id: n.metadata([])["brokers"] for n in survivors}
    finally:
        restore(cluster, victim)
    assert wait_for(lambda: topic_on_every_node(cluster, created, 1), 10), victim.metadata([created])
    ids = {n.node_id: n.metadata([])["controller_id"] for n in cluster}
    assert len(set(ids.values())) == 1 and ids[old] != old, ids


def test_kill9_of_a_broker_fails_its_partitions_over_and_restart_brings_them_back(cluster):
    """kill -9 of a non-controller broker drops it from Metadata and, within seconds, gives every RF 3 partition it led a new leader from the ISR (leader epoch bumped; Metadata and /v1/cluster agree) and takes it out of the ISR of all six partitions, which all keep taking acks=all writes; restarted, it rejoins every ISR, a preferred-replica election (ElectLeaders) makes it lead its partitions again, and every record produced before and during the kill reads back."""
    topic = "cl-broker-kill"
    create_rf3(cluster, topic, 6)
    records = [{"value": f"before-{p}-{i}".encode(), "partition": p} for p in range(6) for i in range(10)]
    delivered = produce_all(cluster.bootstrap, topic, records, acks="all")
    expected = {(part, off): r["value"] for (part, off), r in zip(delivered, records)}

    controller = cluster.controller_id()
    victim = next(n for n in cluster if n.node_id != controller)
    survivors = [n for n in cluster if n is not victim]
    before = {p["partition"]: p for p in view_topic(survivors[0], topic)["partitions"]}
    led = sorted(i for i, p in before.items() if p["leader"] == victim.node_id)
    others = sorted(set(range(6)) - set(led))
    assert led, "the victim leads none of the 6 partitions"
    # Kafka gives a new partition its first replica as leader: the victim is the preferred leader of `led`.
    assert all(before[i]["replicas"][0]["node_id"] == victim.node_id for i in led), before
    assert all(sorted(p["isr"]) == [1, 2, 3] for p in before.values()), before

    def failed_over(node):
        view = {p["partition"]: p for p in view_topic(node, topic)["partitions"]}
        parts = node.metadata([topic])["topics"][topic]["partitions"]
        for i in range(6):
            v, m = view[i], parts[i]
            if v["leader"] in (-1, victim.node_id) or victim.node_id in v["isr"] or v["leader"] not in v["isr"]:
                return False
            if m["error"] != 0 or m["leader"] != v["leader"] or victim.node_id in m["isr"]:
                return False
            if i in led and v["leader_epoch"] <= before[i]["leader_epoch"]:
                return False
            if i in others and (v["leader"], v["leader_epoch"]) != (before[i]["leader"], before[i]["leader_epoch"]):
                return False
        return view

    try:
        victim.kill9()
        t0 = time.monotonic()
        gone = wait_for(lambda: all(victim.node_id not in n.metadata([])["brokers"] for n in survivors), 10, 0.05)
        print(f"kill -9 of broker {victim.node_id}: gone from Metadata after {time.monotonic() - t0:.3f} s")
        assert gone, {n.node_id: n.metadata([])["brokers"] for n in survivors}
        ok = wait_for(lambda: all(failed_over(n) for n in survivors), 10, 0.05)
        elapsed = time.monotonic() - t0
        during = {p["partition"]: p for p in view_topic(survivors[0], topic)["partitions"]}
        print(f"partitions {led} of broker {victim.node_id} failed over after {elapsed:.3f} s: "
              f"{ {i: (before[i]['leader'], before[i]['leader_epoch'], during[i]['leader'], during[i]['leader_epoch'], during[i]['isr']) for i in range(6)} }")
        assert ok, {n.node_id: (view_topic(n, topic), n.metadata([topic])) for n in survivors}
        assert elapsed < 5, f"failover took {elapsed:.3f} s"
        for n in survivors:
            fenced = {b["node_id"]: b["fenced"] for b in n.cluster_view()["brokers"]}
            assert fenced.get(victim.node_id) is True, fenced
        # every partition, the failed-over ones too, keeps taking acks=all writes
        more = produce_all(cluster.bootstrap, topic, [{"value": b"during", "partition": p} for p in range(6)],
                           acks="all")
        for (part, off) in more:
            expected[(part, off)] = b"during"
    finally:
        restore(cluster, victim)

    def back_in_isr():
        return all(victim.node_id in p["isr"] for n in cluster for p in view_topic(n, topic)["partitions"])
    assert wait_for(back_in_isr, 30), {n.node_id: view_topic(n, topic) for n in cluster}
    election = clients.elect_preferred(cluster.bootstrap, topic, led)
    assert election == {i: None for i in led}, election

    def leads_again():
        for n in cluster:
            parts = n.metadata([topic])["topics"][topic]["partitions"]
            if any(parts[i]["leader"] != victim.node_id or parts[i]["error"] != 0 for i in led):
                return False
        return True
    assert wait_for(leads_again, 15), {n.node_id: n.metadata([topic]) for n in cluster}
    final = {p["partition"]: p for p in view_topic(victim, topic)["partitions"]}
    assert all(final[i]["leader_epoch"] > during[i]["leader_epoch"] for i in led), (during, final)
    got = {}
    for part in range(6):
        for m in consume(cluster.bootstrap, topic, partition=part):
            got[(m["partition"], m["offset"])] = m["value"]
    assert got == expected


def test_sigterm_of_a_broker_fences_it_at_once_and_it_reregisters(cluster):
    """SIGTERM of a non-controller broker (controlled shutdown) exits 0 and fences it: the others' Metadata drops it and /v1/cluster marks it fenced; started again it re-registers and is listed by every broker."""
    controller = cluster.controller_id()
    victim = next(n for n in reversed(list(cluster)) if n.node_id != controller)
    survivors = [n for n in cluster if n is not victim]
    try:
        code = victim.stop()
        t0 = time.monotonic()
        assert code == 0, f"SIGTERM exit code {code}"
        gone = wait_for(lambda: all(victim.node_id not in n.metadata([])["brokers"] for n in survivors), 10, 0.02)
        print(f"SIGTERM of broker {victim.node_id}: gone from Metadata {time.monotonic() - t0:.3f} s after it exited")
        assert gone, {n.node_id: n.metadata([])["brokers"] for n in survivors}
        for n in survivors:
            fenced = {b["node_id"]: b["fenced"] for b in n.cluster_view()["brokers"]}
            assert fenced.get(victim.node_id) is True, (n, fenced)
    finally:
        restore(cluster, victim)
    for n in cluster:
        assert sorted(n.metadata([])["brokers"]) == [1, 2, 3], n


def unregister_broker(node, broker_id, correlation_id=77):
    """UnregisterBroker v0 (key 64, flexible) on a fresh connection: (error code, message)."""
    req = kw.frame(kw.request_header_v2(64, 0, correlation_id) + kw.i32(broker_id) + kw.uvarint(0))
    with kw.RawConnection(node.ip, node.kafka_port, timeout_s=20) as c:
        c.send(req)
        r = kw.Reader(c.recv_response(correlation_id, header_tagged_fields=True))
    r.i32()  # throttle time
    return r.i16(), r.compact_string()


def test_unregister_broker_forgets_a_stopped_broker_until_it_starts_again(cluster):
    """kafka-cluster.sh unregister's request for a broker stopped for good: it leaves /v1/cluster and the health report's nodes (no longer 'down' forever); a second unregister is BROKER_ID_NOT_REGISTERED; started again it registers and all three are listed."""
    controller = cluster.controller_id()
    victim = next(n for n in reversed(list(cluster)) if n.node_id != controller)
    others = [n for n in cluster if n is not victim]
    try:
        assert victim.stop() == 0
        assert wait_for(lambda: all(victim.node_id in n.health_overview()["nodes_down"] for n in others), 10)
        code, msg = unregister_broker(others[0], victim.node_id)
        assert code == 0, msg

        def forgotten():
            return all(victim.node_id not in n.health_overview()["all_nodes"]
                       and victim.node_id not in [b["node_id"] for b in n.cluster_view()["brokers"]] for n in others)
        assert wait_for(forgotten, 10), [n.health_overview() for n in others]
        assert all(victim.node_id not in n.health_overview()["nodes_down"] for n in others)
        code, msg = unregister_broker(others[1], victim.node_id)
        assert code == 102 and "not currently registered" in msg, (code, msg)
    finally:
        restore(cluster, victim)
    for n in cluster:
        assert sorted(n.metadata([])["brokers"]) == [1, 2, 3], n
        assert sorted(n.health_overview()["all_nodes"]) == [1, 2, 3], n


# ------------------------------------------------------------------ error codes


def test_wrong_broker_min_isr_and_replication_factor_errors(cluster):
    """Produce and Fetch to a broker that does not lead the partition (a follower, or not a replica at all) get NOT_LEADER_OR_FOLLOWER; acks=all to an RF 3 topic with min.insync.replicas=3 succeeds while all three replicas are in the ISR, gets NOT_ENOUGH_REPLICAS once a killed follower left the ISR (acks=1 is still accepted) and succeeds again when the restarted follower is back in the ISR; replication factor 4 on three brokers gets INVALID_REPLICATION_FACTOR."""
    rf3, rf1, minisr = "cl-wrong-leader-rf3", "cl-wrong-leader-rf1", "cl-min-isr-3"
    create_rf3(cluster, rf3, 1)
    assert raw_create(cluster[1], rf1, partitions=1, rf=1) == (0, None)
    assert wait_for(lambda: topic_on_every_node(cluster, rf1, 1), 10)

    for topic in (rf3, rf1):
        part = cluster[1].metadata([topic])["topics"][topic]["partitions"][0]
        leader = part["leader"]
        assert len(part["replicas"]) == (3 if topic == rf3 else 1), part
        for n in cluster:
            perr, _ = raw_produce(n, topic, 0, [(b"k", f"to-{n.node_id}".encode())], acks=1)
            ferr, _, _ = raw_fetch(n, topic, 0)
            if n.node_id == leader:
                assert (perr, ferr) == (0, 0), (topic, n)
            else:
                assert perr == NOT_LEADER_OR_FOLLOWER, (topic, n, "produce", perr)
                assert ferr == NOT_LEADER_OR_FOLLOWER, (topic, n, "fetch", ferr)

    create_rf3(cluster, minisr, 1, config={"min.insync.replicas": "3"})
    part = cluster[1].metadata([minisr])["topics"][minisr]["partitions"][0]
    assert sorted(part["isr"]) == [1, 2, 3], part
    leader = cluster[part["leader"]]
    assert raw_produce(leader, minisr, 0, [(b"k", b"acks-all-full-isr")], acks=-1) == (0, 0)
    controller = cluster.controller_id()
    follower = cluster[next(r for r in part["replicas"] if r not in (leader.node_id, controller))]

    def isr():
        return leader.metadata([minisr])["topics"][minisr]["partitions"][0]["isr"]
    try:
        follower.kill9()
        assert wait_for(lambda: follower.node_id not in isr(), 10), isr()
        assert leader.metadata([minisr])["topics"][minisr]["partitions"][0]["leader"] == leader.node_id
        assert raw_produce(leader, minisr, 0, [(b"k", b"acks-all-short-isr")], acks=-1)[0] == NOT_ENOUGH_REPLICAS
        assert raw_produce(leader, minisr, 0, [(b"k", b"acks-1")], acks=1) == (0, 1)
    finally:
        restore(cluster, follower)
    assert wait_for(lambda: sorted(isr()) == [1, 2, 3], 30), isr()
    assert raw_produce(leader, minisr, 0, [(b"k", b"acks-all-isr-back")], acks=-1) == (0, 2)
    assert [m["value"] for m in consume(cluster.bootstrap, minisr)] == \
        [b"acks-all-full-isr", b"acks-1", b"acks-all-isr-back"]

    err = admin_results(cluster.bootstrap, "create_topics",
                        [NewTopic("cl-rf4", num_partitions=1, replication_factor=4)])["cl-rf4"][0]
    assert err is not None and err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err
    assert raw_create(cluster[2], "cl-rf4-raw", partitions=1, rf=4)[0] == INVALID_REPLICATION_FACTOR
    for n in cluster:
        topics = n.metadata([])["topics"]
        assert "cl-rf4" not in topics and "cl-rf4-raw" not in topics, sorted(topics)


# ------------------------------------------------------------------ groups


def test_group_of_two_consumers_commits_offsets_readable_through_any_broker(cluster):
    """Two confluent-kafka consumers of one group split a 6-partition topic, read every record and commit; FindCoordinator on every broker names the leader of the group's __consumer_offsets partition (RF 3 on three brokers), and the committed offsets read back through each broker (and raw OffsetFetch to a non-coordinator gets NOT_COORDINATOR)."""
    topic, group, per_partition = "cl-group", "cl-group-g1", 15
    create_rf3(cluster, topic, 6)

    conf = {"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "socket.timeout.ms": 10000}
    consumers = [Consumer(conf), Consumer(conf)]
    seen = [set(), set()]
    try:
        for c in consumers:
            c.subscribe([topic])
        # Both members hold partitions before any record exists, so no rebalance hands a read record on.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for c in consumers:
                m = c.poll(0.1)
                assert m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF), m
            assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
            if all(assignments) and assignments[0] | assignments[1] == set(range(6)):
                break
        assert all(assignments) and assignments[0] | assignments[1] == set(range(6)), assignments
        produce_all(cluster.bootstrap, topic,
                    [{"value": f"{p}-{i}".encode(), "partition": p} for p in range(6) for i in range(per_partition)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for i, c in enumerate(consumers):
                m = c.poll(0.1)
                if m is None:
                    continue
                assert not m.error(), m.error()
                seen[i].add((m.partition(), m.offset()))
            assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
            if len(seen[0] | seen[1]) == 6 * per_partition and all(assignments):
                break
        assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
        assert len(seen[0] | seen[1]) == 6 * per_partition, (len(seen[0]), len(seen[1]))
        assert not (seen[0] & seen[1]), "a record was read by both members"
        assert all(assignments) and not (assignments[0] & assignments[1]), assignments
        assert assignments[0] | assignments[1] == set(range(6)), assignments
        for c in consumers:
            c.commit(asynchronous=False)
    finally:
        for c in consumers:
            c.close()

    view = cluster[1].cluster_view()
    offsets_topic = next((t for t in view["topics"] if t["name"] == "__consumer_offsets"), None)
    assert offsets_topic is not None and offsets_topic["internal"], [t["name"] for t in view["topics"]]
    for p in offsets_topic["partitions"]:
        assert len({r["node_id"] for r in p["replicas"]}) == 3, p
    nparts = len(offsets_topic["partitions"])
    gpart = (java_string_hash(group) & 0x7FFFFFFF) % nparts
    expected_coordinator = {p["partition"]: p["leader"] for p in offsets_topic["partitions"]}[gpart]

    coordinators = {}
    for n in cluster:
        corr = next(_corr)
        coordinators[n.node_id] = kw.parse_find_coordinator_v1_response(
            n.raw(kw.find_coordinator_v1(corr, group), corr))
    assert all(c == (0, expected_coordinator, cluster[expected_coordinator].ip, cluster.kafka_port)
               for c in coordinators.values()), (coordinators, gpart, expected_coordinator)

    want = {p: per_partition for p in range(6)}
    for n in cluster:
        c = Consumer({"bootstrap.servers": n.kafka_addr, "group.id": group, "socket.timeout.ms": 10000})
        try:
            got = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(6)],
                                                                  timeout=15)}
        finally:
            c.close()
        assert got == want, (n, got)

    for n in cluster:
        corr = next(_corr)
        err, offs = kw.parse_offset_fetch_v3_response(n.raw(kw.offset_fetch_v3(corr, group, topic, range(6)), corr))
        if n.node_id == expected_coordinator:
            assert err == 0 and {p: offs[(topic, p)] for p in range(6)} == {p: (per_partition, 0) for p in range(6)}, \
                (err, offs)
        else:
            assert err == NOT_COORDINATOR, (n, err, offs)


# ------------------------------------------------------------------ cluster identity (kills node 3, restores it)


def test_a_data_dir_of_another_cluster_is_refused(cluster, request):
    """Node 3 started on a data dir that a single-node run stamped with another cluster id exits with code 1 within seconds naming both cluster ids; on its own data dir it rejoins."""
    base = cluster.base_dir / "foreign"
    kport, aport = free_ports_on_all(["127.0.0.9"], 2)
    single = ClusterNode(3, "127.0.0.9", base / "data", base / "log", kport, 0, aport, voters="")
    single.flags = {"node-id": 3, "data-dir": single.data_dir, "kafka-addr": single.kafka_addr,
                    "admin-addr": single.admin_addr}
    request.node._fjord_brokers.append(single)
    single.start()
    foreign_id = read_properties(single.data_dir / "meta.properties").get("cluster.id")
    code = single.stop()
    assert code == 0, f"single-node SIGTERM exit code {code}"
    own_id = cluster[3].meta_properties()["cluster.id"]
    assert foreign_id and foreign_id != own_id, (foreign_id, own_id)

    node3 = cluster[3]
    own_dir = node3.flags["data-dir"]
    try:
        node3.kill9()
        node3.flags["data-dir"] = single.data_dir
        proc = node3.spawn()
        try:
            exit_code = proc.wait(timeout=EXIT_TIMEOUT_S)
        except Exception:
            node3.kill9()
            raise AssertionError(f"node 3 kept running {EXIT_TIMEOUT_S} s on another cluster's data dir\n"
                                 + node3.log_tail())
        node3.proc = None
        out = node3.log_paths[-1].read_text(errors="replace")
        print(f"node 3 on the foreign data dir exited {exit_code}; last lines:\n" + "\n".join(out.splitlines()[-3:]))
        assert exit_code == 1, f"exit code {exit_code}\n{out}"
        assert foreign_id in out and own_id in out, f"output does not name both {foreign_id} and {own_id}:\n{out}"
        assert read_properties(single.data_dir / "meta.properties")["cluster.id"] == foreign_id
    finally:
        node3.flags["data-dir"] = own_dir
        restore(cluster, node3)
    assert node3.meta_properties()["cluster.id"] == own_id


# ------------------------------------------------------------------ leader epochs


def test_leader_epoch_grows_when_a_fenced_leader_comes_back(cluster):
    """When a broker's SIGTERM (controlled shutdown) fences it, each RF 3 partition it led moves to another member of its ISR with a bigger leader epoch in /v1/cluster; restarted, the broker rejoins the ISR, and when a preferred-replica election makes it lead them again each such partition's epoch grows once more, as Kafka's controller bumps it at every leader change."""
    topic = "cl-leader-epoch"
    create_rf3(cluster, topic, 6)
    controller = cluster.controller_id()
    victim = next(n for n in cluster if n.node_id != controller)
    survivors = [n for n in cluster if n is not victim]
    before = {p["partition"]: (p["leader"], p["leader_epoch"]) for p in view_topic(survivors[0], topic)["partitions"]}
    led = sorted(i for i, (leader, _) in before.items() if leader == victim.node_id)
    assert led, before

    def moved():
        view = {p["partition"]: p for p in view_topic(survivors[0], topic)["partitions"]}
        return all(view[i]["leader"] in {n.node_id for n in survivors} and victim.node_id not in view[i]["isr"]
                   for i in led) and view
    try:
        assert victim.stop() == 0
        assert wait_for(lambda: all(victim.node_id not in n.metadata([])["brokers"] for n in survivors), 10)
        view = wait_for(moved, 10)
        assert view, view_topic(survivors[0], topic)
        during = {i: (p["leader"], p["leader_epoch"]) for i, p in view.items()}
    finally:
        restore(cluster, victim)
    assert wait_for(lambda: all(victim.node_id in p["isr"] for p in view_topic(victim, topic)["partitions"]), 30), \
        view_topic(victim, topic)
    election = clients.elect_preferred(cluster.bootstrap, topic, led)
    assert election == {i: None for i in led}, election

    def led_again():
        view = {p["partition"]: p for p in view_topic(victim, topic)["partitions"]}
        return all(view[i]["leader"] == victim.node_id for i in led) and view
    view = wait_for(led_again, 15)
    assert view, view_topic(victim, topic)
    after = {i: (p["leader"], p["leader_epoch"]) for i, p in view.items()}
    print(f"(leader, leader_epoch) of partitions {led}: before {before}, while fenced {during}, after {after}")
    assert all(during[i][1] > before[i][1] for i in led), {"before": before, "during": during}
    assert all(after[i][1] > during[i][1] for i in led), {"before": before, "during": during, "after": after}


# ------------------------------------------------------------------ transactions across brokers

COORDINATOR_NOT_AVAILABLE = 15
INVALID_REPLICA_ASSIGNMENT = 39


def find_coordinator(node, key, key_type, timeout_s=20):
    """FindCoordinator v1 sent raw to `node` (key_type 0 group, 1 transaction), retried while
    the internal topic is being created -> (node_id, host, port)."""
    deadline = time.monotonic() + timeout_s
    while True:
        corr = next(_corr)
        err, node_id, host, port = kw.parse_find_coordinator_v1_response(
            node.raw(kw.find_coordinator_v1(corr, key, key_type=key_type), corr))
        if err == 0:
            return node_id, host, port
        assert err == COORDINATOR_NOT_AVAILABLE and time.monotonic() < deadline, (node, key, key_type, err)
        time.sleep(0.2)


def coordinator_everywhere(cluster, key, key_type):
    """The coordinator id every broker names for `key`, checked equal across the three and
    against the leader of the key's partition of the internal topic in /v1/cluster."""
    answers = {n.node_id: find_coordinator(n, key, key_type) for n in cluster}
    coordinator = answers[1][0]
    assert all(a == (coordinator, cluster[coordinator].ip, cluster.kafka_port) for a in answers.values()), answers
    internal = "__consumer_offsets" if key_type == 0 else "__transaction_state"
    t = view_topic(cluster[1], internal)
    gpart = (java_string_hash(key) & 0x7FFFFFFF) % len(t["partitions"])
    assert {p["partition"]: p["leader"] for p in t["partitions"]}[gpart] == coordinator, (key, gpart, t)
    return coordinator


def create_rf1_on_all_brokers(cluster, name, partitions=6):
    """A `partitions`-partition RF 1 topic created with the confluent admin client; asserts
    (/v1/cluster) that its leaders are on all three brokers and returns {partition: leader}."""
    err = admin_results(cluster.bootstrap, "create_topics",
                        [NewTopic(name, num_partitions=partitions, replication_factor=1)])[name][0]
    assert err is None, err
    assert wait_for(lambda: topic_on_every_node(cluster, name, partitions), 15), \
        {n.node_id: n.metadata([name]) for n in cluster}
    leaders = {p["partition"]: p["leader"] for p in view_topic(cluster[1], name)["partitions"]}
    assert set(leaders.values()) == {1, 2, 3}, leaders
    return leaders


def txn_producer(cluster, txn_id):
    p = clients.Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": txn_id, "linger.ms": 5,
                          "message.timeout.ms": 20000, "socket.timeout.ms": 10000})
    p.init_transactions(30)
    return p


def test_transactions_with_the_coordinator_and_the_partitions_on_different_brokers(cluster):
    """A confluent-kafka transactional producer commits, aborts and commits again over a 6-partition RF 1 topic led by all three brokers while its transaction coordinator is one of them: read_committed consumers of every partition read exactly the committed records (markers reached the partitions led by the other two brokers), read_uncommitted ones also the aborted ones, and each transaction left one marker per partition."""
    topic, txn_id, per = "cl-txn-spread", "cl-txn-spread-tx", 3
    leaders = create_rf1_on_all_brokers(cluster, topic)
    p = txn_producer(cluster, txn_id)
    coordinator = coordinator_everywhere(cluster, txn_id, 1)
    remote = sorted(i for i, leader in leaders.items() if leader != coordinator)
    print(f"transaction coordinator {coordinator}; partition leaders {leaders}; led elsewhere: {remote}")
    assert remote and len({leaders[i] for i in remote}) == 2, (coordinator, leaders)

    for label in ("commit1", "abort", "commit2"):
        p.begin_transaction()
        for part in range(6):
            for i in range(per):
                p.produce(topic, value=f"{label}-{part}-{i}".encode(), partition=part)
        if label == "abort":
            assert p.flush(20) == 0
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)

    committed = read_partitions(cluster.bootstrap, topic, range(6), "read_committed")
    uncommitted = read_partitions(cluster.bootstrap, topic, range(6), "read_uncommitted")
    c = clients.consumer(cluster.bootstrap, **{"isolation.level": "read_committed"})
    try:
        for part in range(6):
            want = {label: [f"{label}-{part}-{i}".encode() for i in range(per)]
                    for label in ("commit1", "abort", "commit2")}
            assert committed[part] == want["commit1"] + want["commit2"], (part, leaders[part], committed[part])
            assert uncommitted[part] == want["commit1"] + want["abort"] + want["commit2"], \
                (part, leaders[part], uncommitted[part])
            # 9 records + 3 markers; the last stable offset is the end (no transaction left open).
            assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False) == \
                (0, 3 * per + 3), (part, leaders[part])
    finally:
        c.close()
    no_marker_warnings(cluster)


def test_consume_transform_produce_with_offsets_on_another_broker(cluster):
    """Consume-transform-produce over brokers: a read_committed group consumer of a 6-partition RF 1 input (led by all three brokers) and a transactional producer writing each record upper-cased to a 6-partition RF 1 output with send_offsets_to_transaction, with the transaction coordinator not the group coordinator: the group's committed offsets reach the end of every input partition and the read_committed output holds each input record exactly once, in order."""
    src, dst, group, per = "cl-ctp-in", "cl-ctp-out", "cl-ctp-group", 20
    create_rf1_on_all_brokers(cluster, src)
    out_leaders = create_rf1_on_all_brokers(cluster, dst)
    group_coordinator = coordinator_everywhere(cluster, group, 0)
    # A transactional id whose coordinator is another broker than the group's.
    find_coordinator(cluster[1], "cl-ctp-probe", 1)  # __transaction_state exists from here on
    state = {p["partition"]: p["leader"] for p in view_topic(cluster[1], "__transaction_state")["partitions"]}
    txn_id = next(t for t in (f"cl-ctp-tx-{i}" for i in range(1000))
                  if state[(java_string_hash(t) & 0x7FFFFFFF) % len(state)] != group_coordinator)
    produce_all(cluster.bootstrap, src, [{"value": f"in-{p}-{i}".encode(), "partition": p}
                                         for p in range(6) for i in range(per)])

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "socket.timeout.ms": 10000,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    p = txn_producer(cluster, txn_id)
    txn_coordinator = coordinator_everywhere(cluster, txn_id, 1)
    print(f"group coordinator {group_coordinator}, transaction coordinator {txn_coordinator}, output leaders {out_leaders}")
    assert txn_coordinator != group_coordinator
    done, transactions = 0, 0
    try:
        c.subscribe([src])
        deadline = time.monotonic() + 60
        while done < 6 * per and time.monotonic() < deadline:
            msgs = c.consume(25, 0.5)
            for m in msgs:
                assert not m.error(), m.error()
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, value=m.value().upper(), partition=m.partition())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            done += len(msgs)
            transactions += 1
        assert done == 6 * per, f"transformed {done} of {6 * per}"
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(src, i) for i in range(6)],
                                                                    timeout=15)}
    finally:
        c.close()
    print(f"{transactions} transactions")
    assert committed == {i: per for i in range(6)}, committed
    output = read_partitions(cluster.bootstrap, dst, range(6), "read_committed")
    assert output == {part: [f"IN-{part}-{i}".encode() for i in range(per)] for part in range(6)}, output
    # The offsets read back through a broker that coordinates neither.
    other = next(n for n in cluster if n.node_id not in (group_coordinator, txn_coordinator))
    c = Consumer({"bootstrap.servers": other.kafka_addr, "group.id": group, "socket.timeout.ms": 10000})
    try:
        assert {tp.partition: tp.offset for tp in c.committed([TopicPartition(src, i) for i in range(6)],
                                                               timeout=15)} == {i: per for i in range(6)}
    finally:
        c.close()
    no_marker_warnings(cluster)


def test_kafkajs_transaction_over_partitions_led_by_three_brokers(cluster):
    """kafkajs producer.transaction() with all three brokers in `brokers`: a send to every partition of a 6-partition RF 1 topic led by all three brokers, committed, then one aborted and one more committed: read_committed sees exactly the two committed sends on every partition, read_uncommitted all three."""
    topic, txn_id = "cl-js-txn-spread", "cl-js-txn-spread-tx"
    leaders = create_rf1_on_all_brokers(cluster, topic)
    transactions = [{"sends": [{"topic": topic, "partition": part, "values": [clients.b64(f"{label}-{part}".encode())]}
                               for part in range(6)],
                     "action": "abort" if label == "abort" else "commit"}
                    for label in ("commit1", "abort", "commit2")]
    sent = js_ok("produceTransactional", cluster.addrs[0], brokers=cluster.addrs, transactionalId=txn_id,
                 transactions=transactions, timeout_s=90, driverTimeoutMs=80000)
    assert all(r["errorCode"] == 0 for s in sent for r in s), sent
    coordinator = coordinator_everywhere(cluster, txn_id, 1)
    print(f"kafkajs transaction coordinator {coordinator}; partition leaders {leaders}")
    assert any(leader != coordinator for leader in leaders.values())
    committed = read_partitions(cluster.bootstrap, topic, range(6), "read_committed")
    assert committed == {part: [f"commit1-{part}".encode(), f"commit2-{part}".encode()] for part in range(6)}, \
        (leaders, committed)
    uncommitted = read_partitions(cluster.bootstrap, topic, range(6), "read_uncommitted")
    assert uncommitted == {part: [f"commit1-{part}".encode(), f"abort-{part}".encode(), f"commit2-{part}".encode()]
                           for part in range(6)}, (leaders, uncommitted)
    no_marker_warnings(cluster)


# ------------------------------------------------------------------ manual replica assignments


def test_create_topics_with_manual_replica_assignments(cluster):
    """confluent NewTopic(num_partitions=3, replica_assignment=[[2,3],[3,1],[1,2]]) (librdkafka wants the count given) creates three partitions whose replicas are exactly those brokers in that order (Metadata from every broker, confluent's list_topics, /v1/cluster), each led by its first replica; a duplicate broker [[1,1]], an unknown broker [[7]] and mixed replication factors [[1],[1,2]] are INVALID_REPLICA_ASSIGNMENT through confluent and raw CreateTopics v4, and create nothing."""
    topic, assignment = "cl-manual-assignment", [[2, 3], [3, 1], [1, 2]]
    err = admin_results(cluster.bootstrap, "create_topics", [NewTopic(topic, num_partitions=len(assignment), replica_assignment=assignment)])[topic][0]
    assert err is None, err
    assert wait_for(lambda: topic_on_every_node(cluster, topic, 3), 15), \
        {n.node_id: n.metadata([topic]) for n in cluster}
    for n in cluster:
        parts = n.metadata([topic])["topics"][topic]["partitions"]
        assert {i: (p["replicas"], p["leader"]) for i, p in parts.items()} == \
            {i: (a, a[0]) for i, a in enumerate(assignment)}, (n, parts)
        md = topic_metadata(n.kafka_addr, topic).topics[topic].partitions
        assert {i: (list(p.replicas), p.leader) for i, p in md.items()} == \
            {i: (a, a[0]) for i, a in enumerate(assignment)}, (n, md)
    view = {p["partition"]: p for p in view_topic(cluster[3], topic)["partitions"]}
    assert {i: ([r["node_id"] for r in p["replicas"]], p["leader"]) for i, p in view.items()} == \
        {i: (a, a[0]) for i, a in enumerate(assignment)}, view
    delivered = produce_all(cluster.bootstrap, topic, [{"value": f"p{i}".encode(), "partition": i} for i in range(3)])
    assert delivered == [(i, 0) for i in range(3)], delivered

    for i, bad in enumerate(([[1, 1]], [[7]], [[1], [1, 2]])):
        name = f"cl-bad-assignment-{i}"
        err = admin_results(cluster.bootstrap, "create_topics", [NewTopic(name, num_partitions=len(bad), replica_assignment=bad)])[name][0]
        assert err is not None and err.code() == INVALID_REPLICA_ASSIGNMENT, (bad, err)
        raw_name = f"cl-bad-assignment-raw-{i}"
        corr = next(_corr)
        res = kw.parse_create_topics_v4_response(cluster[2].raw(
            kw.create_topics_v4(corr, [(raw_name, -1, -1, {}, bad)]), corr))
        print(f"CreateTopics v4 assignments {bad}: {res[raw_name]}")
        assert res[raw_name][0] == INVALID_REPLICA_ASSIGNMENT, (bad, res)
        for n in cluster:
            topics = n.metadata([])["topics"]
            assert name not in topics and raw_name not in topics, (bad, sorted(topics))


# ------------------------------------------------------------------ KIP-951 leader hints


def test_produce_v10_to_a_non_leader_names_the_current_leader_and_its_endpoint(cluster):
    """Produce v10 (flexible) sent to a broker that does not lead the partition, a follower of an RF 3 topic or a non-replica of an RF 1 topic, answers NOT_LEADER_OR_FOLLOWER with KIP-951's hints: the partition's current_leader (tagged field 0) is the real leader and its leader epoch, also the new leader and its grown epoch after the old leader's SIGTERM moved leadership to a follower (and the old leader, restarted, is back in the ISR), and the response's node_endpoints (tagged field 0) give that leader's host and port; the leader itself appends the record."""
    rf3, rf1 = "cl-kip951-rf3", "cl-kip951-rf1"
    create_rf3(cluster, rf3, 1)
    assert raw_create(cluster[1], rf1, partitions=1, rf=1) == (0, None)
    assert wait_for(lambda: topic_on_every_node(cluster, rf1, 1), 10)

    def check_hints(topic):
        view = view_topic(cluster[1], topic)["partitions"][0]
        leader, epoch = view["leader"], view["leader_epoch"]
        for n in cluster:
            corr = next(_corr)
            with kw.RawConnection(n.ip, n.kafka_port) as conn:
                conn.send(kw.produce_v10(corr, topic, 0, kw.record_batch([(b"k", f"v10-to-{n.node_id}".encode())]),
                                         acks=1))
                res = kw.parse_produce_v10_response(conn.recv_response(corr, header_tagged_fields=True))
            part = res["partitions"][(topic, 0)]
            if n.node_id == leader:
                assert part["error"] == 0 and part["current_leader"] in (None, (-1, -1)), (topic, n, res)
                assert not res["node_endpoints"], (topic, n, res)
                continue
            print(f"Produce v10 {topic}/0 to broker {n.node_id} (leader {leader}, epoch {epoch}): {res}")
            assert part["error"] == NOT_LEADER_OR_FOLLOWER, (topic, n, res)
            assert part["current_leader"] == (leader, epoch), (topic, n, res)
            endpoints = res["node_endpoints"] or {}
            assert leader in endpoints and endpoints[leader][:2] == (cluster[leader].ip, cluster.kafka_port), \
                (topic, n, res)
        return leader, epoch

    check_hints(rf1)
    leader, epoch = check_hints(rf3)
    # The leader's SIGTERM moves leadership to a follower with a bigger epoch; the hint follows it.
    node = cluster[leader]
    t0 = time.monotonic()
    try:
        assert node.stop() == 0
        t1 = time.monotonic()
    finally:
        restore(cluster, node)
    print(f"leader {leader} (controller {cluster.controller_id()}): SIGTERM took {t1 - t0:.2f} s, "
          f"back and all live {time.monotonic() - t1:.2f} s later")
    def moved_and_rejoined():
        p = view_topic(cluster[1], rf3)["partitions"][0]
        return p["leader"] not in (-1, leader) and p["leader_epoch"] > epoch and sorted(p["isr"]) == [1, 2, 3]
    assert wait_for(moved_and_rejoined, 30), view_topic(cluster[1], rf3)
    new_leader, new_epoch = check_hints(rf3)
    print(f"{rf3}/0: leader {leader} epoch {epoch} -> leader {new_leader} epoch {new_epoch}")
    assert new_leader != leader and new_epoch > epoch, view_topic(cluster[1], rf3)


# ------------------------------------------------------------------ shutdown of the whole cluster (must stay last)


def test_sigterm_of_every_node_with_the_active_controller_last_exits_zero(cluster):
    """SIGTERM to the two nodes that are not the active controller, then to the active controller (left without a quorum), makes each exit 0 within the stop timeout: like Kafka's, a node's shutdown does not wait for a quorum that cannot come back. Runs last: it stops the module's cluster."""
    controller = cluster[1].cluster_view()["controller_id"]
    assert controller in (1, 2, 3)
    codes = {}
    for n in cluster:
        if n.node_id != controller:
            t0 = time.monotonic()
            codes[n.node_id] = n.stop()
            print(f"SIGTERM of node {n.node_id}: {codes[n.node_id]} after {time.monotonic() - t0:.2f} s")
    assert codes == {n: 0 for n in codes}, codes
    last = cluster[controller]
    t0 = time.monotonic()
    code = last.stop()
    tail = "\n".join(last.log_paths[-1].read_text(errors="replace").splitlines()[-8:])
    print(f"SIGTERM of the active controller {controller} without a quorum: {code} after {time.monotonic() - t0:.2f} s"
          f"\n{tail}")
    assert code == 0, f"node {controller} (active controller, last): {code}\n{tail}"
