"""The Ansible deployment (ansible/) against three (then four) throwaway hosts.

Each host is a Debian systemd-nspawn machine with its own rootfs, network
namespace on a bridge the test creates (10.213.7.0/24) and sshd with a key the
test generates (tests/ansible_hosts.py); `ansible-playbook` reaches them over
SSH exactly as it reaches real servers. The tests run in order on one cluster:

  deploy (3 nodes) -> deploy again (changed=0) -> rolling restart under an
  acks=all producer -> upgrade to a rebuilt binary -> add a 4th host ->
  decommission it (and refuse to decommission a voter) -> deploy.yml with a
  changed setting (restarts one node at a time).

Measurements (deploy time, rolling restart time, producer p99 before/during the
rolling restart) are printed and written to /tmp/fjord-ansible-measure.txt.

Needs root and systemd-nspawn (package systemd-container); skipped without
them unless CI=true, where it fails instead. The debootstrap rootfs is cached
in /var/cache/fjord-test-rootfs (first run: debootstrap, about 1.5 min).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ansible_hosts
from conftest import FJORD_BIN, REPO_ROOT

ANSIBLE_DIR = REPO_ROOT / "ansible"
MEASURE_FILE = Path("/tmp/fjord-ansible-measure.txt")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
TOPIC = "ansible-rolling"
RATE_PER_S = 200

# Module fixture setup (a first debootstrap, ~95 s) counts against the first test.
pytestmark = pytest.mark.timeout(900)

MEASUREMENTS = []


def measure(line):
    """Print a measurement (shows with pytest -s) and append it to MEASURE_FILE."""
    print(f"\n[measure] {line}", flush=True)
    MEASUREMENTS.append(line)
    MEASURE_FILE.write_text("\n".join(MEASUREMENTS) + "\n")


def unavailable(reason):
    if IN_CI:
        pytest.fail(f"the Ansible tests must run in CI: {reason}")
    pytest.skip(reason)


def ansible_bin(name):
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} not installed (pip install ansible-core)")
    return found


class Lab:
    """The hosts plus what the tests need around them: inventories and playbook runs."""

    def __init__(self, hosts: ansible_hosts.HostLab):
        self.hosts = hosts
        self.work = hosts.work
        self.control_dir = self.work / "cp"
        self.control_dir.mkdir(exist_ok=True)
        self.runs = 0

    def inventory(self, names):
        path = self.work / f"inventory-{'-'.join(names)}.yml"
        lines = ["fjord:", "  hosts:"]
        for name in names:
            h = self.hosts.hosts[name]
            lines.append(f"    {name}: {{ansible_host: {h.ip}, fjord_node_id: {h.index}}}")
        lines += [
            "  vars:",
            "    ansible_user: root",
            f"    ansible_ssh_private_key_file: {self.hosts.key}",
            "    ansible_ssh_common_args: >-",
            "      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "    ansible_python_interpreter: /usr/bin/python3",
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def playbook(self, playbook, inventory, *extra, check=True):
        """Run one playbook; returns (seconds, output, {host: (ok, changed, unreachable, failed)})."""
        self.runs += 1
        env = dict(os.environ)
        env.update({
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
        })
        cmd = [ansible_bin("ansible-playbook"), "-i", str(inventory), str(ANSIBLE_DIR / playbook), *extra]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.work, timeout=600)
        took = time.monotonic() - t0
        out = r.stdout + r.stderr
        (self.work / f"run{self.runs}-{playbook}.log").write_text(out)
        recap = {m.group(1): tuple(int(m.group(i)) for i in range(2, 6)) for m in RECAP.finditer(r.stdout)}
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}) after {took:.1f} s:\n{out[-8000:]}")
        return took, out, recap, r.returncode

    def close_ssh_masters(self):
        for sock in self.control_dir.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "unused"], capture_output=True,
                           timeout=10)


@pytest.fixture(scope="module")
def lab():
    ok, reason = ansible_hosts.nspawn_works()
    if not ok:
        unavailable(reason)
    if not FJORD_BIN.exists():
        pytest.fail(f"broker binary {FJORD_BIN} does not exist (set FJORD_BIN)")
    ansible_bin("ansible-playbook")
    try:
        hosts = ansible_hosts.HostLab()
    except Exception as e:  # no rootfs (debootstrap failed), no bridge ...
        unavailable(f"cannot set up the hosts: {e}")
    lab = Lab(hosts)
    try:
        if hosts.rootfs_build_s:
            measure(f"debootstrap of the test rootfs: {hosts.rootfs_build_s:.1f} s")
        t0 = time.monotonic()
        try:
            hosts.add_hosts([1, 2, 3])
        except Exception as e:
            if IN_CI:
                raise
            pytest.skip(f"systemd-nspawn hosts do not boot here: {e}")
        measure(f"three hosts booted and reachable over ssh: {time.monotonic() - t0:.1f} s")
        yield lab
    finally:
        try:
            lab.close_ssh_masters()
        finally:
            errors = hosts.close()
            assert not errors, f"cleanup left things behind: {errors}"


# ------------------------------------------------------------------ helpers

def bootstrap(lab, names=("h1", "h2", "h3")):
    return ",".join(f"{lab.hosts.hosts[n].ip}:9092" for n in names)


def kcat_brokers(addr):
    r = subprocess.run(["kcat", "-b", addr, "-L", "-J", "-m", "10"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return sorted(b["id"] for b in json.loads(r.stdout)["brokers"])


def wait_brokers(addr, want, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    got = None
    while time.monotonic() < deadline:
        got = kcat_brokers(addr)
        if got == want:
            return got
        time.sleep(0.5)
    raise AssertionError(f"Metadata from {addr} lists brokers {got}, want {want}")


def service_state(host):
    """{MainPID, ActiveEnterTimestampMonotonic, ActiveState, UnitFileState} of fjord.service on a host."""
    r = host.ssh("systemctl show -p MainPID -p ActiveEnterTimestampMonotonic -p ActiveState -p UnitFileState fjord")
    return dict(line.split("=", 1) for line in r.stdout.split())


def assert_no_changes(recap, hosts):
    assert set(hosts) <= set(recap), recap
    changed = {h: recap[h][1] for h in hosts if recap[h][1] != 0 or recap[h][3] != 0}
    assert not changed, f"a second run changed something: {recap}"


def consume_all(addr, topic, partitions, timeout_s=60):
    c = Consumer({"bootstrap.servers": addr, "group.id": f"check-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    values, at_eof = [], set()
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while len(at_eof) < partitions and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_eof.add(m.partition())
                continue
            at_eof.discard(m.partition())
            values.append(m.value())
    finally:
        c.close()
    assert len(at_eof) == partitions, f"not every partition read to its end: {at_eof}"
    return values


class SteadyProducer(threading.Thread):
    """acks=all, default retries, RATE_PER_S messages a second; every delivery report
    is recorded with its latency and the phase it was sent in."""

    def __init__(self, addr, topic):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": addr, "acks": "all", "linger.ms": 1})
        self.topic = topic
        self.phase = "before"
        self.stop_flag = threading.Event()
        self.sent = 0
        self.acked = []      # (value, latency_s, phase)
        self.failed = []     # (value, error)
        self.lock = threading.Lock()

    def run(self):
        interval = 1.0 / RATE_PER_S
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            value = f"msg-{self.sent:07d}".encode()
            sent_at, phase = time.monotonic(), self.phase

            def report(err, msg, value=value, sent_at=sent_at, phase=phase):
                with self.lock:
                    if err is not None:
                        self.failed.append((value, str(err)))
                    else:
                        self.acked.append((value, time.monotonic() - sent_at, phase))

            self.p.produce(self.topic, value, key=value, on_delivery=report)
            self.sent += 1
            self.p.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        self.p.flush(120)

    def finish(self):
        self.stop_flag.set()
        self.join(180)

    def p99(self, phase):
        lat = sorted(latency for _, latency, ph in self.acked if ph == phase)
        if not lat:
            return float("nan"), 0
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, len(lat)


# ------------------------------------------------------------------ the tests (in order)

def test_deploy_three_nodes(lab):
    """deploy.yml on three fresh hosts: three brokers in Metadata, an RF 3 topic takes writes and reads (kcat and confluent-kafka)."""
    inv = lab.inventory(["h1", "h2", "h3"])
    took, out, recap, _ = lab.playbook("deploy.yml", inv, "-e", f"fjord_binary_src={FJORD_BIN}")
    measure(f"fresh three-node deploy (deploy.yml): {took:.1f} s")
    assert all(recap[h][3] == 0 and recap[h][2] == 0 for h in ("h1", "h2", "h3")), recap
    addr = bootstrap(lab)
    for h in ("h1", "h2", "h3"):
        assert wait_brokers(f"{lab.hosts.hosts[h].ip}:9092", [1, 2, 3]) == [1, 2, 3]
    admin = AdminClient({"bootstrap.servers": addr})
    md = admin.list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    for f in admin.create_topics([NewTopic(TOPIC, 3, 3)], operation_timeout=30).values():
        f.result(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        t = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
        if not t.error and len(t.partitions) == 3 and all(len(p.isrs) == 3 for p in t.partitions.values()):
            break
        time.sleep(0.2)
    assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in t.partitions.values()), t.partitions
    # kcat: produce with acks=all, read back
    r = subprocess.run(["kcat", "-b", addr, "-t", "ansible-kcat", "-P", "-X", "acks=all"], input="one\ntwo\nthree\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", "-b", addr, "-t", "ansible-kcat", "-C", "-o", "beginning", "-e", "-q"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == ["one", "two", "three"], r.stdout + r.stderr
    # confluent-kafka: produce, read back
    p = Producer({"bootstrap.servers": addr, "acks": "all"})
    for i in range(30):
        p.produce(TOPIC, f"warmup-{i}".encode())
    assert p.flush(30) == 0
    values = consume_all(addr, TOPIC, 3)
    assert sorted(v for v in values if v.startswith(b"warmup-")) == sorted(f"warmup-{i}".encode() for i in range(30))
    # what the role set up on a host
    h1 = lab.hosts.hosts["h1"]
    toml = h1.ssh("cat /etc/fjord/fjord.toml").stdout
    assert '"controller.quorum.voters" = "1@10.213.7.11:9093,2@10.213.7.12:9093,3@10.213.7.13:9093"' in toml
    assert '"process.roles" = "broker,controller"' in toml
    unit = h1.ssh("systemctl cat fjord").stdout
    assert "LimitMEMLOCK=infinity" in unit and "TimeoutStopSec=" in unit, unit
    state = service_state(h1)
    assert state["ActiveState"] == "active" and state["UnitFileState"] == "enabled", state
    limits = h1.ssh(f"cat /proc/{state['MainPID']}/limits").stdout
    memlock = [line for line in limits.splitlines() if line.startswith("Max locked memory")]
    print(f"\n[info] {memlock[0]}  (LimitMEMLOCK=infinity, clamped to the container's hard limit)")
    sysctl = h1.ssh("cat /etc/sysctl.d/60-fjord.conf; sysctl -n net.core.somaxconn").stdout
    assert "\nnet.core.somaxconn = 4096" in sysctl and sysctl.strip().endswith("4096"), sysctl
    assert "# vm.swappiness = 1" in sysctl, sysctl  # read-only /proc/sys/vm here: skipped, not failed


def test_deploy_again_changes_nothing(lab):
    """A second deploy.yml run reports changed=0 for every host."""
    inv = lab.inventory(["h1", "h2", "h3"])
    before = {h: service_state(lab.hosts.hosts[h])["MainPID"] for h in ("h1", "h2", "h3")}
    took, out, recap, _ = lab.playbook("deploy.yml", inv, "-e", f"fjord_binary_src={FJORD_BIN}")
    measure(f"second deploy.yml run (no change): {took:.1f} s")
    assert_no_changes(recap, ["h1", "h2", "h3"])
    assert {h: service_state(lab.hosts.hosts[h])["MainPID"] for h in before} == before


def test_rolling_restart_under_load(lab):
    """rolling-restart.yml while an acks=all producer sends 200 msg/s: every node restarted, no failed send, every acked record read back."""
    inv = lab.inventory(["h1", "h2", "h3"])
    addr = bootstrap(lab)
    before = {h: service_state(lab.hosts.hosts[h]) for h in ("h1", "h2", "h3")}
    prod = SteadyProducer(addr, TOPIC)
    prod.start()
    try:
        time.sleep(8)
        prod.phase = "during"
        took, out, recap, _ = lab.playbook("rolling-restart.yml", inv)
        prod.phase = "after"
        time.sleep(2)
    finally:
        prod.finish()
    measure(f"rolling restart of three nodes (rolling-restart.yml): {took:.1f} s")
    p99_before, n_before = prod.p99("before")
    p99_during, n_during = prod.p99("during")
    measure(f"producer acks=all p99 before the rolling restart: {p99_before:.1f} ms ({n_before} records)")
    measure(f"producer acks=all p99 during the rolling restart: {p99_during:.1f} ms ({n_during} records)")
    assert not prod.failed, f"{len(prod.failed)} failed sends, first: {prod.failed[:5]}"
    assert len(prod.acked) == prod.sent, (len(prod.acked), prod.sent)
    after = {h: service_state(lab.hosts.hosts[h]) for h in ("h1", "h2", "h3")}
    for h in before:
        assert after[h]["ActiveState"] == "active"
        assert after[h]["MainPID"] != before[h]["MainPID"], f"{h} was not restarted"
    order = sorted(before, key=lambda h: int(after[h]["ActiveEnterTimestampMonotonic"]))
    print(f"\n[info] restart order: {order}")
    values = set(consume_all(addr, TOPIC, 3))
    lost = [v for v, _, _ in prod.acked if v not in values]
    assert not lost, f"{len(lost)} acknowledged records missing, first: {lost[:5]}"


def test_upgrade_to_a_new_binary(lab):
    """upgrade.yml with a rebuilt binary (other path and checksum): every host gets it and every node restarts on it."""
    inv = lab.inventory(["h1", "h2", "h3"])
    new_bin = lab.work / "fjord-v2"
    shutil.copyfile(FJORD_BIN, new_bin)
    with open(new_bin, "ab") as f:  # a "rebuild": same code, different bytes (trailing data is ignored by the loader)
        f.write(f"\0fjord-ansible-test-upgrade {time.time()}\0".encode())
    os.chmod(new_bin, 0o755)
    want = hashlib.sha256(new_bin.read_bytes()).hexdigest()
    before = {h: service_state(lab.hosts.hosts[h]) for h in ("h1", "h2", "h3")}
    took, out, recap, _ = lab.playbook("upgrade.yml", inv, "-e", f"fjord_binary_src={new_bin}")
    measure(f"rolling upgrade of three nodes (upgrade.yml): {took:.1f} s")
    for h in ("h1", "h2", "h3"):
        host = lab.hosts.hosts[h]
        got = host.ssh("sha256sum /usr/local/bin/fjord").stdout.split()[0]
        assert got == want, f"{h}: binary not upgraded"
        state = service_state(host)
        assert state["ActiveState"] == "active" and state["MainPID"] != before[h]["MainPID"], (h, state)
        exe = host.ssh(f"readlink /proc/{state['MainPID']}/exe").stdout.strip()
        assert exe == "/usr/local/bin/fjord", f"{h} runs {exe!r}, not the new binary"
    assert wait_brokers(bootstrap(lab), [1, 2, 3]) == [1, 2, 3]
    # the same binary again: nothing to do, nobody restarts
    pids = {h: service_state(lab.hosts.hosts[h])["MainPID"] for h in ("h1", "h2", "h3")}
    _, _, recap, _ = lab.playbook("upgrade.yml", inv, "-e", f"fjord_binary_src={new_bin}")
    assert_no_changes(recap, ["h1", "h2", "h3"])
    assert {h: service_state(lab.hosts.hosts[h])["MainPID"] for h in pids} == pids


def test_add_node(lab):
    """add-node.yml with a fourth host: it joins as broker-only (voters unchanged), four brokers in Metadata, and a deploy.yml run with four hosts changes nothing."""
    t0 = time.monotonic()
    lab.hosts.add_hosts([4])
    print(f"\n[info] fourth host booted in {time.monotonic() - t0:.1f} s")
    inv = lab.inventory(["h1", "h2", "h3", "h4"])
    new_bin = lab.work / "fjord-v2"  # the cluster runs the upgraded binary now
    # no fjord_binary_src and no repository build: the role takes the binary the cluster runs
    took, out, recap, _ = lab.playbook("add-node.yml", inv, "-e", "fjord_node=h4",
                                       "-e", "fjord_binary_build=/nonexistent/target/release/fjord",
                                       "-e", f"fjord_binary_fetch_dir={lab.work / 'fetched'}")
    measure(f"add-node.yml (fourth broker): {took:.1f} s")
    assert "Fjord cannot move partitions" in out
    got = lab.hosts.hosts["h4"].ssh("sha256sum /usr/local/bin/fjord").stdout.split()[0]
    assert got == hashlib.sha256(new_bin.read_bytes()).hexdigest(), "h4 did not get the binary the cluster runs"
    assert wait_brokers(bootstrap(lab), [1, 2, 3, 4]) == [1, 2, 3, 4]
    toml = lab.hosts.hosts["h4"].ssh("cat /etc/fjord/fjord.toml").stdout
    assert '"process.roles" = "broker"' in toml, toml
    assert '"controller.quorum.voters" = "1@10.213.7.11:9093,2@10.213.7.12:9093,3@10.213.7.13:9093"' in toml
    # the new broker takes partitions of a new topic
    admin = AdminClient({"bootstrap.servers": bootstrap(lab)})
    for f in admin.create_topics([NewTopic("ansible-on-four", 4, 1)], operation_timeout=30).values():
        f.result(30)
    leaders = {p.leader for p in admin.list_topics("ansible-on-four", timeout=10).topics["ansible-on-four"]
               .partitions.values()}
    assert 4 in leaders, leaders
    for f in admin.delete_topics(["ansible-on-four"], operation_timeout=30).values():
        f.result(30)
    # deploy.yml with the fourth host in the inventory keeps it a broker: no change anywhere
    _, _, recap, _ = lab.playbook("deploy.yml", inv, "-e", f"fjord_binary_src={new_bin}")
    assert_no_changes(recap, ["h1", "h2", "h3", "h4"])


def test_decommission(lab):
    """decommission.yml refuses a voter; for the fourth broker it stops and disables it, unregisters it (the playbook waits for health_overview to drop it) and Metadata lists three brokers again."""
    inv = lab.inventory(["h1", "h2", "h3", "h4"])
    pid1 = service_state(lab.hosts.hosts["h1"])["MainPID"]
    _, out, _, rc = lab.playbook("decommission.yml", inv, "-e", "fjord_node=h1", check=False)
    assert rc != 0 and "is a controller voter" in out, out[-3000:]
    assert service_state(lab.hosts.hosts["h1"])["MainPID"] == pid1
    took, out, recap, _ = lab.playbook("decommission.yml", inv, "-e", "fjord_node=h4")
    measure(f"decommission.yml (fourth broker): {took:.1f} s")
    assert "Unregister the stopped broker" in out and "Wait until the node is gone from the health report" in out, out[-3000:]
    state = service_state(lab.hosts.hosts["h4"])
    assert state["ActiveState"] == "inactive" and state["UnitFileState"] == "disabled", state
    assert wait_brokers(bootstrap(lab), [1, 2, 3]) == [1, 2, 3]
    # the rest stays whole, and a later deploy.yml leaves the decommissioned host alone
    _, _, recap, _ = lab.playbook("deploy.yml", inv, "-e", f"fjord_binary_src={lab.work / 'fjord-v2'}")
    assert_no_changes(recap, ["h1", "h2", "h3", "h4"])
    assert service_state(lab.hosts.hosts["h4"])["ActiveState"] == "inactive"


def test_config_change_restarts_one_node_at_a_time(lab):
    """deploy.yml with a changed broker setting on the running cluster: every node gets it and restarts, one at a time, each after the previous one is back and the cluster is whole."""
    inv = lab.inventory(["h1", "h2", "h3", "h4"])
    names = ["h1", "h2", "h3"]
    before = {h: service_state(lab.hosts.hosts[h]) for h in names}
    setting = '{"fjord_broker_settings": {"log.retention.check.interval.ms": 300001}}'
    took, out, recap, _ = lab.playbook("deploy.yml", inv, "-e", f"fjord_binary_src={lab.work / 'fjord-v2'}",
                                       "-e", setting)
    measure(f"deploy.yml with a changed setting (rolling restart of three nodes): {took:.1f} s")
    for h in names:
        assert '"log.retention.check.interval.ms" = "300001"' in lab.hosts.hosts[h].ssh("cat /etc/fjord/fjord.toml").stdout
        assert recap[h][1] > 0, recap
    after = {h: service_state(lab.hosts.hosts[h]) for h in names}
    assert all(after[h]["MainPID"] != before[h]["MainPID"] for h in names), (before, after)
    # one at a time: in the output, each restart is followed by its wait for the whole cluster before the next
    blocks = out.split("TASK [fjord : Restart the service]")[1:]
    assert len(blocks) == 3, out[-4000:]
    for block in blocks[:-1]:
        assert "TASK [fjord : Wait until every member reports a whole cluster]" in block
    starts = sorted(int(after[h]["ActiveEnterTimestampMonotonic"]) for h in names)
    assert all(b - a > 500_000 for a, b in zip(starts, starts[1:])), starts  # microseconds
    assert wait_brokers(bootstrap(lab), [1, 2, 3]) == [1, 2, 3]
    assert service_state(lab.hosts.hosts["h4"])["ActiveState"] == "inactive"
