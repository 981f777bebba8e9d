#!/usr/bin/env python3
"""Times a three-node Fjord cluster's membership events on this machine.

Starts nodes 1-3 on 127.0.0.2-4 (the cluster issue's command line), then
measures, `--rounds` times each:
  start      spawn of all three -> every /health 200 and Metadata lists 3 brokers
  controller kill -9 of the active controller -> a new one in /v1/cluster, and
             -> the next CreateTopics through a surviving broker succeeds
             (a new confluent-kafka AdminClient per attempt)
  fence      kill -9 of a broker that is not the controller -> Metadata no
             longer lists it
Prints one JSON object (seconds: min/median/max per measure). Needs
confluent-kafka (tests/requirements.txt). Not a test: no assertions.

  .venv/bin/python bench/scripts/cluster_timings.py --bin target/release/fjord --rounds 5
"""
import argparse
import json
import os
import signal
import socket
import statistics
import sys
import subprocess
import tempfile
import time
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def free_port():
    for _ in range(100):
        with socket.socket() as s:
            s.bind((IPS[0], 0))
            port = s.getsockname()[1]
        ok = True
        for ip in IPS:
            with socket.socket() as t:
                try:
                    t.bind((ip, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port")


class Cluster:
    def __init__(self, binary, root):
        self.binary, self.root = binary, root
        self.kp, self.cp, self.ap = free_port(), free_port(), free_port()
        self.procs = {}
        self.extra = []

    def voters(self):
        return ",".join(f"{i + 1}@{ip}:{self.cp}" for i, ip in enumerate(IPS))

    def spawn(self, node):
        ip = IPS[node - 1]
        cmd = [self.binary, "serve", "--node-id", str(node), "--data-dir", f"{self.root}/d{node}",
               "--kafka-addr", f"{ip}:{self.kp}", "--controller-addr", f"{ip}:{self.cp}",
               "--controller.quorum.voters", self.voters(), "--admin-addr", f"{ip}:{self.ap}",
               "--default.replication.factor", "3", "--offsets.topic.replication.factor", "3",
               "--transaction.state.log.replication.factor", "3", "--shards", "1"] + self.extra
        log = open(f"{self.root}/n{node}.log", "ab")
        self.procs[node] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def healthy(self, node):
        try:
            with urllib.request.urlopen(f"http://{IPS[node - 1]}:{self.ap}/health", timeout=0.5) as r:
                return r.status == 200
        except OSError:
            return False

    def cluster(self, node):
        with urllib.request.urlopen(f"http://{IPS[node - 1]}:{self.ap}/v1/cluster", timeout=1) as r:
            return json.load(r)

    def bootstrap(self, node):
        return f"{IPS[node - 1]}:{self.kp}"

    def kill9(self, node):
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def wait(cond, timeout=30, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    raise TimeoutError


def live_brokers(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    return set(md.brokers)


def all_up(c):
    return all(c.healthy(n) for n in (1, 2, 3)) and len(live_brokers(c.bootstrap(1))) == 3


def summary(xs):
    return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/fjord")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out = {"start_s": [], "controller_elected_s": [], "create_after_controller_kill_s": [], "fenced_after_kill_s": []}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="fjord-timings-") as root:
            c = Cluster(os.path.abspath(args.bin), root)
            try:
                t0 = time.monotonic()
                for n in (1, 2, 3):
                    c.spawn(n)
                wait(lambda: all_up(c))
                out["start_s"].append(time.monotonic() - t0)
                print(f"round {r}: started in {out['start_s'][-1]:.3f} s", file=sys.stderr)
                old = c.cluster(1)["controller_id"]
                survivor = next(n for n in (1, 2, 3) if n != old)
                t0 = time.monotonic()
                c.kill9(old)
                wait(lambda: c.cluster(survivor)["controller_id"] not in (old, -1))
                out["controller_elected_s"].append(time.monotonic() - t0)
                name = f"timing-{r}"
                while True:
                    # A fresh client per attempt: librdkafka's admin client keeps
                    # waiting for the controller it knew and does not look for a
                    # new one (see the note in README's cluster section).
                    fresh = AdminClient({"bootstrap.servers": c.bootstrap(survivor)})
                    try:
                        fresh.create_topics([NewTopic(name, 1, 1)], operation_timeout=5)[name].result(6)
                        break
                    except Exception as e:  # noqa: BLE001 - retry what an application would retry
                        if "already exists" in str(e):
                            break
                        print(f"round {r}: CreateTopics failed, retrying: {e!r}", file=sys.stderr)
                        time.sleep(0.01)
                out["create_after_controller_kill_s"].append(time.monotonic() - t0)
                print(f"round {r}: controller {old} killed; elected after {out['controller_elected_s'][-1]:.3f} s, "
                      f"CreateTopics after {out['create_after_controller_kill_s'][-1]:.3f} s", file=sys.stderr)
                c.spawn(old)
                wait(lambda: all_up(c))
                controller = c.cluster(1)["controller_id"]
                victim = next(n for n in (1, 2, 3) if n != controller)
                watcher = next(n for n in (1, 2, 3) if n not in (victim,))
                t0 = time.monotonic()
                c.kill9(victim)
                wait(lambda: victim not in live_brokers(c.bootstrap(watcher)), step=0.01)
                out["fenced_after_kill_s"].append(time.monotonic() - t0)
                print(f"round {r}: broker {victim} killed; out of Metadata after {out['fenced_after_kill_s'][-1]:.3f} s", file=sys.stderr)
            finally:
                c.stop_all()
    print(json.dumps({k: summary(v) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
