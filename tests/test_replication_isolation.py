"""A partition leader cut off from the other brokers, but not from clients.

Each of the three nodes runs in its own cgroup (cgroup2, mounted at
/sys/fs/cgroup/unified here); nftables drops packets by the sending
socket's cgroup, so the leader cannot reach its peers and they cannot reach
it, while the test's clients (in no such cgroup) still reach all three.
This is the "zombie leader" of Kafka's replication design: it still thinks
it leads, and must not acknowledge acks=all writes the majority never got.
"""
import os
import shutil
import subprocess
import threading
import time

import pytest

import clients
from cluster import NODE_IPS, Cluster, read_partitions

CGROUP_ROOT = "/sys/fs/cgroup/unified"
TOPIC = "isolated"


def nft(*args):
    subprocess.run(["nft", *args], check=True, capture_output=True, timeout=10)


def have_tools():
    if not os.path.isdir(CGROUP_ROOT) or not os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):
        return "cgroup2 is not mounted at " + CGROUP_ROOT
    if shutil.which("nft") is None:
        return "nft (Debian package nftables) is not installed"
    return None


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory):
    why = have_tools()
    if why:
        pytest.fail(why)  # .ci/run installs nftables: a missing tool is a CI error, not a skip
    group = f"fjordtest-{os.getpid()}"
    base = os.path.join(CGROUP_ROOT, group)
    os.makedirs(base, exist_ok=True)
    c = Cluster(tmp_path_factory.mktemp("isolation"))
    for n in c:
        n.cgroup = os.path.join(base, f"n{n.node_id}")
        os.makedirs(n.cgroup, exist_ok=True)
    table = f"fjordtest{os.getpid()}"
    try:
        c.start_live()
        yield c, group, table
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        c.stop()
        for n in c:
            try:
                os.rmdir(n.cgroup)
            except OSError:
                pass
        try:
            os.rmdir(base)
        except OSError:
            pass


def partition_view(node, topic=TOPIC):
    for t in node.cluster_view()["topics"]:
        if t["name"] == topic:
            return t["partitions"][0]
    return None


def isolate(table, group, leader_id):
    """Drop every packet between the leader's cgroup and the other nodes' addresses, both ways."""
    nft("add", "table", "inet", table)
    nft("add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }")
    others = [ip for n, ip in NODE_IPS.items() if n != leader_id]
    leader_cg = f'"unified/{group}/n{leader_id}"'
    nft("add", "rule", "inet", table, "out", "socket", "cgroupv2", "level", "2", leader_cg,
        "ip", "daddr", "{ " + ", ".join(others) + " }", "drop")
    for n in NODE_IPS:
        if n != leader_id:
            nft("add", "rule", "inet", table, "out", "socket", "cgroupv2", "level", "2",
                f'"unified/{group}/n{n}"', "ip", "daddr", NODE_IPS[leader_id], "drop")


def test_an_isolated_leader_acknowledges_nothing_the_majority_lacks_and_heals(isolated_cluster):
    """Proves that a leader cut off from its peers (clients still reach it) acknowledges no
    acks=all write the other replicas did not get, the majority elects a new leader and
    takes writes, and after healing every acknowledged record is there exactly once."""
    c, group, table = isolated_cluster
    clients.create_topic(c.bootstrap, TOPIC, partitions=1, replication_factor=3,
                         config={"min.insync.replicas": "2"})
    clients.wait_for(lambda: (partition_view(c[1]) or {}).get("leader", -1) > 0, timeout_s=15)
    before = [{"value": f"before-{i}".encode(), "partition": 0} for i in range(200)]
    clients.produce_all(c.bootstrap, TOPIC, before, acks="all")
    leader = partition_view(c[1])["leader"]
    majority = [n for n in c if n.node_id != leader]

    acked = set(v["value"] for v in before)
    lock = threading.Lock()

    def produce(bootstrap, prefix, count, stop_at):
        """acks=all, idempotent; the values that were acknowledged go to `acked`."""
        p = clients.producer(bootstrap, acks="all", **{"enable.idempotence": True, "message.timeout.ms": 15000,
                                                        "request.timeout.ms": 5000})
        results = {}

        def cb(err, msg):
            results[msg.value()] = err

        for i in range(count):
            if time.monotonic() > stop_at:
                break
            p.produce(TOPIC, f"{prefix}-{i}".encode(), partition=0, on_delivery=cb)
            p.poll(0)
            time.sleep(0.01)
        p.flush(30)
        with lock:
            acked.update(v for v, err in results.items() if err is None)
        return results

    isolate(table, group, leader)
    try:
        t0 = time.monotonic()
        # Clients that know only the zombie, and clients of the majority.
        zombie_results = {}
        z = threading.Thread(target=lambda: zombie_results.update(
            produce(c[leader].kafka_addr, "zombie", 300, t0 + 6)))
        z.start()
        new_leader = clients.wait_for(
            lambda: (lambda p: p["leader"] if p and p["leader"] not in (-1, leader) else None)(partition_view(majority[0])),
            timeout_s=15)
        assert leader not in partition_view(majority[0])["isr"], "the cut-off leader left the ISR"
        majority_results = produce(",".join(n.kafka_addr for n in majority), "majority", 200, time.monotonic() + 30)
        assert all(err is None for err in majority_results.values()), \
            [e for e in majority_results.values() if e is not None][:3]
        z.join(60)
        # Whatever the zombie acknowledged must have reached the majority (librdkafka may
        # have found the new leader through the zombie's broker list); nothing else counts.
        zombie_acked = [v for v, err in zombie_results.items() if err is None]
        print(f"new leader {new_leader}; zombie-side acks {len(zombie_acked)} of {len(zombie_results)}")
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)

    # Healed: the old leader rejoins as a follower, truncating what only it had.
    clients.wait_for(lambda: leader in partition_view(majority[0])["isr"], timeout_s=30)
    got = read_partitions(c.bootstrap, TOPIC, [0])[0]
    assert len(got) == len(set(got)), "no record twice"
    missing = acked - set(got)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
