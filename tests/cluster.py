"""A three-node Fjord cluster for the black-box tests: each node is a REAL
`fjord serve` process on its own loopback IP (127.0.0.2, .3, .4) with the same
Kafka, controller and admin ports on every IP, voters `1@127.0.0.2:C,2@...,3@...`.

`Cluster.start()` spawns all three at once and waits for /health on each
(`fjord serve` opens /health only after the quorum formed and the broker
registered). Nodes are conftest `Broker`s, so stop/kill9/start/log_tail work
as for a single broker.

`ListenerCluster` starts the same three nodes with Kafka-style named listeners
(INTERNAL, EXTERNAL, CONTROLLER) instead of --kafka-addr/--controller-addr.
"""

import json
import socket
import time
import urllib.request
from pathlib import Path

import kafkawire as kw
from confluent_kafka import KafkaError, OFFSET_BEGINNING, TopicPartition

import clients
from conftest import Broker

NODE_IPS = {1: "127.0.0.2", 2: "127.0.0.3", 3: "127.0.0.4"}


def port_free_on_all(port, ips):
    for ip in ips:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError:
                return False
    return True


def free_ports_on_all(ips, count):
    """`count` distinct ports, each bind-tested free on every IP in `ips`."""
    out = []
    while len(out) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ips[0], 0))
            port = s.getsockname()[1]
        if port not in out and port_free_on_all(port, ips):
            out.append(port)
    return out


class ClusterNode(Broker):
    """One node of the cluster, started with exactly the cluster command line."""

    def __init__(self, node_id, ip, data_dir, log_dir, kafka_port, controller_port, admin_port, voters,
                 shards=2):
        self.ip = ip
        self.node_id = node_id
        self.controller_port = controller_port
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(data_dir, log_dir, shards=shards, kafka_port=kafka_port, admin_port=admin_port)
        self.flags = {
            "node-id": node_id,
            "data-dir": self.data_dir,
            "kafka-addr": self.kafka_addr,
            "controller-addr": f"{ip}:{controller_port}",
            "controller.quorum.voters": voters,
            "admin-addr": self.admin_addr,
            "default.replication.factor": 3,
            "offsets.topic.replication.factor": 3,
            "transaction.state.log.replication.factor": 3,
            "transaction.state.log.min.isr": 2,
            "min.insync.replicas": 1,
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            "log.segment.bytes": 67108864,
            "shards": shards,
        }

    @property
    def kafka_addr(self):
        return f"{self.ip}:{self.kafka_port}"

    @property
    def admin_addr(self):
        return f"{self.ip}:{self.admin_port}"

    def cluster_view(self, timeout_s=5.0):
        """GET /v1/cluster as JSON."""
        with urllib.request.urlopen(f"http://{self.admin_addr}/v1/cluster", timeout=timeout_s) as r:
            return json.loads(r.read())

    def health_overview(self, timeout_s=5.0):
        """GET /v1/cluster/health_overview as JSON."""
        with urllib.request.urlopen(f"http://{self.admin_addr}/v1/cluster/health_overview", timeout=timeout_s) as r:
            return json.loads(r.read())

    def meta_properties(self):
        """DATA_DIR/meta.properties as a dict."""
        return read_properties(self.data_dir / "meta.properties")

    # -- raw wire
    def raw(self, request_bytes, correlation_id, timeout_s=15.0):
        """Send one raw frame on a fresh connection and return the response body."""
        with kw.RawConnection(self.ip, self.kafka_port, timeout_s=timeout_s) as c:
            c.send(request_bytes)
            return c.recv_response(correlation_id)

    def metadata(self, topics=None, timeout_s=10.0):
        """Metadata v4 (all topics when `topics` is None), parsed by kafkawire.parse_metadata_v4_full."""
        if topics is None:
            body = kw.i32(-1) + b"\x00"  # null topic array: all topics
            req = kw.frame(kw.request_header_v1(kw.API_METADATA, 4, 7) + body)
        else:
            req = kw.metadata_v4(7, topics, allow_auto_topic_creation=False)
        return kw.parse_metadata_v4_full(self.raw(req, 7, timeout_s))

    def __repr__(self):
        return f"node{self.node_id}@{self.ip}"


def read_properties(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class Cluster:
    def __init__(self, base_dir, shards=2):
        self.base_dir = Path(base_dir)
        ips = list(NODE_IPS.values())
        self.kafka_port, self.controller_port, self.admin_port = free_ports_on_all(ips, 3)
        voters = ",".join(f"{n}@{ip}:{self.controller_port}" for n, ip in NODE_IPS.items())
        self.nodes = {
            n: ClusterNode(n, ip, self.base_dir / f"data{n}", self.base_dir / f"node{n}", self.kafka_port,
                           self.controller_port, self.admin_port, voters, shards=shards)
            for n, ip in NODE_IPS.items()
        }

    def __iter__(self):
        return iter(self.nodes.values())

    def __getitem__(self, node_id):
        return self.nodes[node_id]

    @property
    def bootstrap(self):
        """All three Kafka addresses, comma separated."""
        return ",".join(n.kafka_addr for n in self)

    @property
    def addrs(self):
        return [n.kafka_addr for n in self]

    def start(self):
        for n in self:
            n.spawn()
        for n in self:
            n.wait_healthy()
        return self

    def stop(self):
        """SIGTERM every node, the active controller first each time, so the node stopped
        last is a follower: a voter left alone while it is the active controller does not
        exit on SIGTERM (test_cluster.py's last test shows it) and costs the
        20 s stop timeout and a kill -9."""
        remaining = [n for n in self if n.is_running()]
        while remaining:
            victim = remaining[0]
            if len(remaining) > 1:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    try:
                        controller = remaining[0].cluster_view(timeout_s=1)["controller_id"]
                    except (OSError, ValueError):
                        controller = None
                    match = [n for n in remaining if n.node_id == controller and n.is_running()]
                    if match:
                        victim = match[0]
                        break
                    time.sleep(0.1)
            try:
                victim.stop()
            except Exception:  # teardown must reach every node
                victim.kill9()
            remaining.remove(victim)

    def running(self):
        return [n for n in self if n.is_running()]

    def controller_id(self, via=None):
        """The controller id a running node's Metadata reports."""
        node = via or self.running()[0]
        return node.metadata([])["controller_id"]

    def start_live(self):
        """start() and wait_all_live(); on failure every node is stopped before raising
        (the module fixtures' setup)."""
        try:
            self.start()
            self.wait_all_live()
        except Exception:
            self.stop()
            raise
        return self

    def wait_all_live(self, timeout_s=30.0):
        """Until every node runs, answers /health, and each node's Metadata lists
        all of this cluster's brokers and /v1/cluster shows none of them fenced.
        Returns seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                ok = True
                for n in self:
                    if not n.is_running() or n.health_status() != 200:
                        ok = False
                        last = f"{n} not running/healthy"
                        break
                    md = n.metadata([])
                    view = n.cluster_view()
                    if sorted(md["brokers"]) != sorted(self.nodes) or \
                            any(b["fenced"] for b in view["brokers"] if b["node_id"] in self.nodes):
                        ok = False
                        last = (n, md["brokers"], view["brokers"])
                        break
                if ok:
                    return time.monotonic() - t0
            except (OSError, ValueError, kw.ConnectionClosed) as e:
                last = repr(e)
            time.sleep(0.2)
        raise AssertionError(f"cluster not fully live after {timeout_s} s: {last}")


# ------------------------------------------------------------------ named listeners

LISTENER_PROTOCOLS = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"


class ListenerNode(ClusterNode):
    """A node started with Kafka-style named listeners instead of --kafka-addr and
    --controller-addr: INTERNAL on its own IP (inter-broker), EXTERNAL on 127.0.0.1
    advertised as localhost:PE, CONTROLLER on its own IP. `kafka_addr` is the INTERNAL
    address (what `raw`/`metadata` use), `external_addr` the advertised EXTERNAL one."""

    def __init__(self, node_id, ip, data_dir, log_dir, internal_port, external_port, controller_port, admin_port,
                 voters, process_roles=None):
        super().__init__(node_id, ip, data_dir, log_dir, internal_port, controller_port, admin_port, voters,
                         shards=1)
        self.external_port = external_port
        self.flags = {
            "listeners": f"INTERNAL://{ip}:{internal_port},EXTERNAL://127.0.0.1:{external_port},"
                         f"CONTROLLER://{ip}:{controller_port}",
            "advertised.listeners": f"INTERNAL://{ip}:{internal_port},EXTERNAL://localhost:{external_port}",
            "listener.security.protocol.map": LISTENER_PROTOCOLS,
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "admin-addr": self.admin_addr,
            "node-id": node_id,
            "data-dir": self.data_dir,
            "shards": 1,
            "offsets.topic.replication.factor": 3,
            "transaction.state.log.replication.factor": 3,
        }
        if process_roles:
            self.flags["process.roles"] = process_roles

    @property
    def external_addr(self):
        return f"localhost:{self.external_port}"


class ListenerCluster(Cluster):
    """Three ListenerNodes (1-3 on 127.0.0.2-4, voters 1-3): INTERNAL, CONTROLLER and admin
    ports the same on every IP (also free on `spare_ips`, for brokers added later),
    EXTERNAL ports distinct on 127.0.0.1."""

    def __init__(self, base_dir, spare_ips=()):
        self.base_dir = Path(base_dir)
        ips = list(NODE_IPS.values()) + list(spare_ips)
        self.kafka_port, self.controller_port, self.admin_port = free_ports_on_all(ips, 3)
        node_ids = list(NODE_IPS) + [4 + i for i in range(len(spare_ips))]
        taken = {self.kafka_port, self.controller_port, self.admin_port}
        external = [p for p in free_ports_on_all(["127.0.0.1"], len(node_ids) + len(taken)) if p not in taken]
        self.external_ports = dict(zip(node_ids, external))
        self.voters = ",".join(f"{n}@{ip}:{self.controller_port}" for n, ip in NODE_IPS.items())
        self.nodes = {n: self.make_node(n, ip) for n, ip in NODE_IPS.items()}

    def make_node(self, node_id, ip, process_roles=None):
        return ListenerNode(node_id, ip, self.base_dir / f"data{node_id}", self.base_dir / f"node{node_id}",
                            self.kafka_port, self.external_ports[node_id], self.controller_port, self.admin_port,
                            self.voters, process_roles=process_roles)

    @property
    def external_addrs(self):
        return [n.external_addr for n in self]


# ------------------------------------------------------------------ reading back

def read_partitions(bootstrap, topic, partitions, isolation="read_uncommitted", timeout_s=30, offsets=False):
    """Every partition read from the beginning to partition EOF with one assign()ed
    confluent consumer -> {partition: [values]} ([(offset, value)] with `offsets`)."""
    c = clients.consumer(bootstrap, **{"isolation.level": isolation})
    out = {p: [] for p in partitions}
    at_eof = set()
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while at_eof != set(partitions) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_eof.add(m.partition())
                continue
            at_eof.discard(m.partition())
            out[m.partition()].append((m.offset(), m.value()) if offsets else m.value())
    finally:
        c.close()
    assert at_eof == set(partitions), f"{topic}: partitions {sorted(set(partitions) - at_eof)} not read to the end"
    return out


def no_marker_warnings(nodes):
    """No broker logged a failed or refused transaction marker."""
    bad = ("transaction marker", "WriteTxnMarkers")
    lines = [line for n in nodes for line in n.log_tail(10_000_000).splitlines() if any(b in line for b in bad)]
    assert not lines, "\n".join(lines[-20:])
