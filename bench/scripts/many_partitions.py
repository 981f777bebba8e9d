#!/usr/bin/env python3
"""Many partitions on one node: start-up time, memory and fds per idle
partition, and a restart, with a given open-file limit.

    .venv/bin/python bench/scripts/many_partitions.py --fjord target/release/fjord \
        --topics 100 --partitions 100 --nofile 20000

Creates TOPICS x PARTITIONS partitions (RF 1), produces one acks=all record
to each (so every partition has a segment file), reports the broker's RSS
and open fds, stops it (SIGTERM), starts it again and reports the time until
/health answers and until every record reads back, then kill -9 and the same.
"""

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Broker:
    def __init__(self, binary, data, nofile, port=19392, admin=19744, shards=2):
        self.binary, self.data, self.nofile = binary, data, nofile
        self.port, self.admin, self.shards = port, admin, shards
        self.proc = None

    def start(self):
        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.log = open(os.path.join(tempfile.gettempdir(), f"fjord-many-partitions-{time.time_ns()}.log"), "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data, "--kafka-addr", f"127.0.0.1:{self.port}",
             "--advertised-kafka-addr", f"127.0.0.1:{self.port}", "--admin-addr", f"127.0.0.1:{self.admin}",
             "--shards", str(self.shards), "--num.partitions", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=limits)
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"broker exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/health", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM):
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(300)
        return time.monotonic() - t0

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"


def produce(bootstrap, topics, partitions, tag):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 50,
                  "queue.buffering.max.messages": 1_000_000})
    failed = []
    for t in range(topics):
        for i in range(partitions):
            p.produce(f"mp-{t}", value=f"{tag}-{t}-{i}", partition=i,
                      on_delivery=lambda err, m: err and failed.append(err))
        p.poll(0)
    assert p.flush(300) == 0 and not failed, failed[:3]


def read_all(bootstrap, topics, partitions, want):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mp-{time.time_ns()}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(f"mp-{t}", i, 0) for t in range(topics) for i in range(partitions)])
    n, deadline = 0, time.monotonic() + 600
    while n < want and time.monotonic() < deadline:
        for m in c.consume(10000, timeout=1):
            if m.error() is None:
                n += 1
    c.close()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fjord", default="target/release/fjord")
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--nofile", type=int, default=20000)
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    total = a.topics * a.partitions
    root = tempfile.mkdtemp(prefix="fjord-many-")
    data = os.path.join(root, "data")
    os.makedirs(data)
    b = Broker(os.path.abspath(a.fjord), data, a.nofile, shards=a.shards)
    try:
        b.start()
        base_rss = rss_mib(b.proc.pid)
        t0 = time.monotonic()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for start in range(0, a.topics, 20):
            fs = admin.create_topics([NewTopic(f"mp-{t}", a.partitions, 1) for t in range(start, min(a.topics, start + 20))],
                                     operation_timeout=120, request_timeout=120)
            for f in fs.values():
                f.result(300)
        created = time.monotonic() - t0
        t0 = time.monotonic()
        produce(b.bootstrap, a.topics, a.partitions, "a")
        produced = time.monotonic() - t0
        rss, nfd = rss_mib(b.proc.pid), fds(b.proc.pid)
        print(f"{total} partitions, RLIMIT_NOFILE {a.nofile}, {a.shards} shards: created in {created:.1f} s, "
              f"one acks=all record each in {produced:.1f} s; RSS {rss:.0f} MiB ({(rss - base_rss) * 1024 / total:.1f} KiB "
              f"per partition over an empty broker's {base_rss:.0f} MiB), {nfd} fds open")
        stop_s = b.stop()
        start_s = b.start()
        t0 = time.monotonic()
        got = read_all(b.bootstrap, a.topics, a.partitions, total)
        print(f"clean stop {stop_s:.1f} s, start to /health 200 {start_s:.1f} s, all {got}/{total} records read in "
              f"{time.monotonic() - t0:.1f} s; RSS {rss_mib(b.proc.pid):.0f} MiB, {fds(b.proc.pid)} fds")
        b.stop(signal.SIGKILL)
        start_s = b.start()
        print(f"after kill -9: start to /health 200 {start_s:.1f} s")
        b.stop()
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
