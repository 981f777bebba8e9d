"""A three-node Fjord cluster (tests/cluster.py ListenerCluster) started with
Kafka-style named listeners instead of --kafka-addr/--controller-addr:
INTERNAL on each node's own IP (127.0.0.2-4, the inter-broker listener),
EXTERNAL on 127.0.0.1 advertised as localhost:PE_N, and CONTROLLER for the
controller quorum. Clients must be told the addresses of the listener they came
in on: INTERNAL addresses through INTERNAL, localhost:PE_N through EXTERNAL.

The cluster starts once for the module; a broker-only fourth node joins it in
one test and is stopped again at its end.
"""

import itertools
import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import clients
import kafkawire as kw
from clients import admin_results, js_ok, kcat, produce_all, topic_metadata, wait_for
from cluster import ListenerCluster, ListenerNode, free_ports_on_all, no_marker_warnings, read_partitions

COORDINATOR_NOT_AVAILABLE = 15
BAD_CONFIG_EXIT_TIMEOUT_S = 10
FOURTH_IP = "127.0.0.5"

_corr = itertools.count(100)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ListenerCluster(tmp_path_factory.mktemp("listeners"), spare_ips=[FOURTH_IP]).start_live()
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _attach_logs(request, cluster):
    """A failing test's report carries every node's log (conftest's report hook)."""
    request.node._fjord_brokers = list(cluster)


def raw(host, port, request_bytes, corr, timeout_s=15.0):
    with kw.RawConnection(host, port, timeout_s=timeout_s) as c:
        c.send(request_bytes)
        return c.recv_response(corr)


def raw_metadata(host, port, topics=None):
    """Metadata v4 (all topics when None) sent to host:port."""
    corr = next(_corr)
    if topics is None:
        req = kw.frame(kw.request_header_v1(kw.API_METADATA, 4, corr) + kw.i32(-1) + b"\x00")
    else:
        req = kw.metadata_v4(corr, topics, allow_auto_topic_creation=False)
    return kw.parse_metadata_v4_full(raw(host, port, req, corr))


def find_coordinator(host, port, key, key_type, timeout_s=20):
    """FindCoordinator v1 to host:port, retried while the internal topic is created -> (node, host, port)."""
    deadline = time.monotonic() + timeout_s
    while True:
        corr = next(_corr)
        err, node_id, chost, cport = kw.parse_find_coordinator_v1_response(
            raw(host, port, kw.find_coordinator_v1(corr, key, key_type=key_type), corr))
        if err == 0:
            return node_id, chost, cport
        assert err == COORDINATOR_NOT_AVAILABLE and time.monotonic() < deadline, (host, port, key, err)
        time.sleep(0.2)


def topic_led_everywhere(nodes, name, partitions):
    for n in nodes:
        t = n.metadata([name])["topics"].get(name)
        if t is None or t["error"] != 0 or sorted(t["partitions"]) != list(range(partitions)):
            return False
        if any(p["leader"] < 0 or p["error"] != 0 for p in t["partitions"].values()):
            return False
    return True


def leaders_of(node, name):
    topics = {t["name"]: t for t in node.cluster_view()["topics"]}
    return {p["partition"]: p["leader"] for p in topics[name]["partitions"]}


# ------------------------------------------------------------------ metadata per listener


def test_each_listener_answers_its_own_addresses(cluster):
    """kcat -L, confluent list_topics and raw Metadata through a node's INTERNAL address list all three brokers at their INTERNAL addresses (127.0.0.N:PI); through its EXTERNAL address (localhost:PE_N) they list the three localhost:PE_N addresses, and kafkajs describeCluster through EXTERNAL does too; the controller id is the same on both."""
    internal = {n.node_id: n.kafka_addr for n in cluster}
    external = {n.node_id: n.external_addr for n in cluster}
    controller = cluster[1].cluster_view()["controller_id"]
    assert controller in internal
    for n in cluster:
        for addr, want in ((n.kafka_addr, internal), (n.external_addr, external)):
            k = json.loads(kcat("-L", "-J", "-b", addr, "-X", "socket.timeout.ms=10000").stdout)
            assert {b["id"]: b["name"] for b in k["brokers"]} == want, (addr, k["brokers"])
            assert k["controllerid"] == controller, (addr, k)
            md = topic_metadata(addr)
            assert {b: f"{m.host}:{m.port}" for b, m in md.brokers.items()} == want, (addr, md.brokers)
            assert md.controller_id == controller, (addr, md.controller_id)
            host, port = addr.rsplit(":", 1)
            r = raw_metadata(host, int(port), [])
            assert {b: f"{h}:{p}" for b, (h, p, _rack) in r["brokers"].items()} == want, (addr, r)
    described = js_ok("describeCluster", cluster.external_addrs[0], brokers=cluster.external_addrs)
    assert {b["nodeId"]: f"{b['host']}:{b['port']}" for b in described["brokers"]} == external, described
    assert described["controller"] == controller, described


# ------------------------------------------------------------------ clients through EXTERNAL


def test_kafkajs_tutorial_through_the_external_listeners(cluster):
    """The kafkajs tutorial with brokers ['localhost:PE_1', 'localhost:PE_2', 'localhost:PE_3']: createTopics (3 partitions, RF 3), an acks -1 producer sends N keyed messages and a fromBeginning group consumer reads all N and commits them."""
    topic, group, n = "ls-kafkajs-tutorial", "ls-kafkajs-group", 30
    messages = [{"key": clients.b64(f"key-{i % 5}".encode()), "value": clients.b64(f"value-{i}".encode())}
                for i in range(n)]
    res = js_ok("tutorial", cluster.external_addrs[0], brokers=cluster.external_addrs, topic=topic, numPartitions=3,
                replicationFactor=3, messages=messages, groupId=group, count=n, timeoutMs=40000,
                driverTimeoutMs=58000, timeout_s=75)
    assert res["created"] is True, res["created"]
    assert all(r["errorCode"] == 0 for r in res["sent"]), res["sent"]
    got = sorted(int(clients.unb64(r["value"]).decode().split("-")[1]) for r in res["records"])
    assert got == list(range(n)), got
    committed = {p["partition"]: int(p["offset"]) for t in res["offsets"] for p in t["partitions"]}
    assert sum(committed.values()) == n, committed
    leaders = leaders_of(cluster[1], topic)
    print(f"{topic} leaders: {leaders}")


def test_confluent_group_through_external_gets_external_coordinator(cluster):
    """FindCoordinator through an EXTERNAL address names the group coordinator at its localhost:PE_N address (and through INTERNAL at its 127.0.0.N:PI address); a confluent-kafka group consumer bootstrapped on one EXTERNAL address reads a 3-partition RF 3 topic produced through another, commits, and the committed offsets read back through the third."""
    topic, group, per = "ls-group", "ls-group-g1", 10
    err = admin_results(cluster.external_addrs[0], "create_topics",
                        [NewTopic(topic, num_partitions=3, replication_factor=3)])[topic][0]
    assert err is None, err
    assert wait_for(lambda: topic_led_everywhere(cluster, topic, 3), 15)
    answers = {}
    for n in cluster:
        answers[("external", n.node_id)] = find_coordinator("127.0.0.1", n.external_port, group, 0)
        answers[("internal", n.node_id)] = find_coordinator(n.ip, n.kafka_port, group, 0)
    coordinator = answers[("internal", 1)][0]
    node = cluster[coordinator]
    for (listener, _), answer in answers.items():
        want = (coordinator, "localhost", node.external_port) if listener == "external" else \
            (coordinator, node.ip, node.kafka_port)
        assert answer == want, answers

    produce_all(cluster.external_addrs[1], topic,
                [{"value": f"{p}-{i}".encode(), "partition": p} for p in range(3) for i in range(per)])
    c = Consumer({"bootstrap.servers": cluster.external_addrs[0], "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "socket.timeout.ms": 10000})
    seen = set()
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 40
        while len(seen) < 3 * per and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert not m.error(), m.error()
            seen.add((m.partition(), m.value()))
        assert len(seen) == 3 * per, sorted(seen)
        c.commit(asynchronous=False)
    finally:
        c.close()
    c = Consumer({"bootstrap.servers": cluster.external_addrs[2], "group.id": group, "socket.timeout.ms": 10000})
    try:
        got = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)}
    finally:
        c.close()
    assert got == {p: per for p in range(3)}, got


def test_transaction_through_external_listeners_commits_on_every_broker(cluster):
    """A confluent-kafka transactional producer bootstrapped on the EXTERNAL addresses (FindCoordinator for its transactional id answers localhost:PE_N) commits, aborts and commits over a 6-partition RF 1 topic led by all three brokers: read_committed through EXTERNAL sees exactly the committed records on every partition, so the coordinator's markers reached the other brokers (over INTERNAL) and no broker logged a failed marker."""
    topic, txn_id = "ls-txn", "ls-txn-tx"
    err = admin_results(cluster.external_addrs[2], "create_topics",
                        [NewTopic(topic, num_partitions=6, replication_factor=1)])[topic][0]
    assert err is None, err
    assert wait_for(lambda: topic_led_everywhere(cluster, topic, 6), 15)
    leaders = leaders_of(cluster[1], topic)
    assert set(leaders.values()) == {1, 2, 3}, leaders
    p = Producer({"bootstrap.servers": ",".join(cluster.external_addrs), "transactional.id": txn_id, "linger.ms": 5,
                  "message.timeout.ms": 20000, "socket.timeout.ms": 10000})
    p.init_transactions(30)
    answers = {n.node_id: find_coordinator("127.0.0.1", n.external_port, txn_id, 1) for n in cluster}
    coordinator = answers[1][0]
    assert all(a == (coordinator, "localhost", cluster[coordinator].external_port) for a in answers.values()), answers
    print(f"transaction coordinator {coordinator}, leaders {leaders}")
    for label in ("commit1", "abort", "commit2"):
        p.begin_transaction()
        for part in range(6):
            p.produce(topic, value=f"{label}-{part}".encode(), partition=part)
        if label == "abort":
            assert p.flush(20) == 0
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
    got = read_partitions(cluster.external_addrs[0], topic, range(6), "read_committed")
    assert got == {part: [f"commit1-{part}".encode(), f"commit2-{part}".encode()] for part in range(6)}, got
    no_marker_warnings(cluster)


# ------------------------------------------------------------------ bad listener settings


def bad_listener_cases():
    return [
        ("listener.security.protocol.map", lambda ip, pi, pe, pc: "INTERNAL:PLAINTEXT,EXTERNAL:SSL,CONTROLLER:PLAINTEXT"),
        ("inter.broker.listener.name", lambda ip, pi, pe, pc: "NOPE"),
        # Kafka: "advertised.listeners listener names must be equal to or a subset of the ones defined in listeners"
        ("advertised.listeners", lambda ip, pi, pe, pc: f"INTERNAL://{ip}:{pi},EXTERNAL://localhost:{pe},NOPE://localhost:1"),
        # Kafka: "controller.listener.names must contain at least one value appearing in the 'listeners' configuration"
        ("controller.listener.names", lambda ip, pi, pe, pc: "NOPE"),
    ]


@pytest.mark.parametrize("setting,value", bad_listener_cases(), ids=[c[0] for c in bad_listener_cases()])
def test_a_bad_listener_setting_stops_fjord_serve_naming_it(tmp_path, setting, value):
    """`fjord serve` with the module's listener command line but one bad listener setting (an SSL listener, an inter-broker listener not in `listeners`, an advertised listener not in `listeners`, a controller listener name not in `listeners`) exits with code 2 at once, before serving, and its stderr names the setting."""
    ip = "127.0.0.9"
    pi, pe, pc, pa = free_ports_on_all([ip, "127.0.0.1"], 4)
    node = ListenerNode(1, ip, tmp_path / "data", tmp_path, pi, pe, pc, pa, voters=f"1@{ip}:{pc}")
    node.flags[setting] = value(ip, pi, pe, pc)
    proc = subprocess.Popen(node.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=BAD_CONFIG_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"--{setting} {node.flags[setting]!r}: fjord serve still running after "
                             f"{BAD_CONFIG_EXIT_TIMEOUT_S} s\n" + (out + err).decode(errors="replace")[-3000:])
    err = err.decode(errors="replace")
    print(f"--{setting} {node.flags[setting]!r}: exit {proc.returncode}: {err.strip()}")
    assert proc.returncode == 2, (proc.returncode, err, out[-2000:])
    assert setting in err, err


# ------------------------------------------------------------------ a broker-only fourth node


def test_a_broker_only_node_joins_as_a_fourth_broker_and_leads_partitions(cluster, request):
    """A fourth node with process.roles=broker (node 4 on 127.0.0.5, not a voter, its own CONTROLLER listener for the metadata log it follows as a Raft learner) starts, every node's Metadata (INTERNAL and EXTERNAL) lists four brokers while the controller stays a voter, a new 8-partition RF 1 topic gets partitions led by node 4 and every partition takes confluent-kafka writes and reads through EXTERNAL, and SIGTERM stops node 4 with exit 0 and drops it from Metadata."""
    node4 = cluster.make_node(4, FOURTH_IP, process_roles="broker")
    request.node._fjord_brokers.append(node4)
    topic = "ls-fourth-broker"
    try:
        node4.start()
        nodes = list(cluster) + [node4]
        internal = {n.node_id: n.kafka_addr for n in nodes}
        external = {n.node_id: n.external_addr for n in nodes}

        def four_listed():
            return all(sorted(n.metadata([])["brokers"]) == [1, 2, 3, 4] for n in nodes)
        assert wait_for(four_listed, 15), {n.node_id: n.metadata([])["brokers"] for n in nodes}
        for n in nodes:
            md = n.metadata([])
            assert {b: f"{h}:{p}" for b, (h, p, _r) in md["brokers"].items()} == internal, (n, md)
            assert md["controller_id"] in (1, 2, 3), (n, md)
            r = raw_metadata("127.0.0.1", n.external_port, [])
            assert {b: f"{h}:{p}" for b, (h, p, _r) in r["brokers"].items()} == external, (n, r)
        view = node4.cluster_view()
        assert {b["node_id"]: b["fenced"] for b in view["brokers"]} == {1: False, 2: False, 3: False, 4: False}, view

        err = admin_results(external[4], "create_topics",
                            [NewTopic(topic, num_partitions=8, replication_factor=1)])[topic][0]
        assert err is None, err
        assert wait_for(lambda: topic_led_everywhere(nodes, topic, 8), 15), \
            {n.node_id: n.metadata([topic]) for n in nodes}
        leaders = leaders_of(node4, topic)
        print(f"{topic} leaders: {leaders}")
        assert 4 in leaders.values(), leaders
        produce_all(",".join(external.values()), topic,
                    [{"value": f"v-{p}".encode(), "partition": p} for p in range(8)])
        got = read_partitions(external[1], topic, range(8))
        assert got == {p: [f"v-{p}".encode()] for p in range(8)}, got
    finally:
        code = node4.stop()
    assert code == 0, f"node 4 SIGTERM exit code {code}"
    assert wait_for(lambda: all(sorted(n.metadata([])["brokers"]) == [1, 2, 3] for n in cluster), 10), \
        {n.node_id: n.metadata([])["brokers"] for n in cluster}
