#!/usr/bin/env python3
"""Times replication on a three-node Fjord cluster on this machine, and
runs fjord-bench's acks=all producer against RF 3 and RF 1 topics.

Starts nodes 1-3 on 127.0.0.2-4 (one shard each; see cluster_timings.py),
then `--rounds` times:
  leaderless   kill -9 of the leader of an RF 3 partition -> a new live
               leader in /v1/cluster of a survivor
  first_ack    the same kill -> the acknowledgement of the first record a
               confluent-kafka producer (acks=all, one record every 5 ms)
               sent after the kill (what a client sees)
  rejoin_isr   restart of the killed node -> it is back in the ISR
  group_resume kill -9 of a consumer group's coordinator -> the group's
               consumer receives its next record (a producer sends every 5 ms)
Then, once: `fjord-bench produce --acks all` with RF 3 and with RF 1
(throughput unthrottled, then latency at --rate). Prints one JSON object.
Not a test: no assertions.

  .venv/bin/python bench/scripts/replication_timings.py --bin target/release/fjord \\
      --bench target/release/fjord-bench --rounds 3
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster_timings import Cluster, all_up, summary, wait  # noqa: E402

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def partition_state(c, via, topic):
    for t in c.cluster(via)["topics"]:
        if t["name"] == topic:
            return t["partitions"][0]
    return None


class SteadyProducer:
    """acks=all, one record every `interval_s`; records (sent, acknowledged) times of each success."""

    def __init__(self, bootstrap, topic, interval_s=0.005):
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                           "linger.ms": 0, "metadata.max.age.ms": 1000, "topic.metadata.refresh.interval.ms": 1000})
        self.topic, self.interval_s = topic, interval_s
        self.acked = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        def cb_for(sent):
            def cb(err, _msg):
                if err is None:
                    self.acked.append((sent, time.monotonic()))
            return cb
        while not self.stop:
            self.p.produce(self.topic, b"x" * 100, on_delivery=cb_for(time.monotonic()))
            self.p.poll(0)
            time.sleep(self.interval_s)
        self.p.flush(30)

    def close(self):
        self.stop = True
        self.t.join()


def create(c, topic, rf, node=1):
    a = AdminClient({"bootstrap.servers": c.bootstrap(node)})
    a.create_topics([NewTopic(topic, 1, rf, config={"min.insync.replicas": "2" if rf == 3 else "1"})])[topic].result(15)


def bench(args, c, topic, rf, rate, seconds):
    out = f"{c.root}/bench-{topic}-{rate}.json"
    cmd = [args.bench, "produce", "--bootstrap", c.bootstrap(1), "--topic", topic, "--replication-factor", str(rf),
           "--acks", "all", "--record-size", "1024", "--duration-sec", str(seconds), "--warmup-sec", "1",
           "--rate", str(rate), "--json", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/fjord")
    ap.add_argument("--bench", default="target/release/fjord-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=5000)
    args = ap.parse_args()
    args.bench = os.path.abspath(args.bench)
    out = {"leaderless_s": [], "first_ack_after_kill_s": [], "rejoin_isr_s": [], "group_resume_s": []}
    with tempfile.TemporaryDirectory(prefix="fjord-repl-") as root:
        c = Cluster(os.path.abspath(args.bin), root)
        try:
            for n in (1, 2, 3):
                c.spawn(n)
            wait(lambda: all_up(c))
            for r in range(args.rounds):
                topic = f"failover-{r}"
                create(c, topic, 3)
                wait(lambda: partition_state(c, 1, topic) is not None and partition_state(c, 1, topic)["leader"] > 0)
                prod = SteadyProducer(",".join(c.bootstrap(n) for n in (1, 2, 3)), topic)
                wait(lambda: len(prod.acked) > 50)
                leader = partition_state(c, 1, topic)["leader"]
                survivor = next(n for n in (1, 2, 3) if n != leader)
                t0 = time.monotonic()
                c.kill9(leader)
                wait(lambda: partition_state(c, survivor, topic)["leader"] not in (-1, leader), step=0.002)
                out["leaderless_s"].append(time.monotonic() - t0)
                # The first record sent after the kill that is acknowledged.
                wait(lambda: any(sent > t0 for sent, _ in prod.acked))
                out["first_ack_after_kill_s"].append(min(acked for sent, acked in prod.acked if sent > t0) - t0)
                t1 = time.monotonic()
                c.spawn(leader)
                wait(lambda: leader in partition_state(c, survivor, topic)["isr"], timeout=60, step=0.01)
                out["rejoin_isr_s"].append(time.monotonic() - t1)
                prod.close()
                wait(lambda: all_up(c))
                print(f"round {r}: leaderless {out['leaderless_s'][-1]:.3f} s, first ack {out['first_ack_after_kill_s'][-1]:.3f} s, "
                      f"rejoin {out['rejoin_isr_s'][-1]:.3f} s", file=sys.stderr)

                group = f"g-{r}"
                gtopic = f"group-{r}"
                create(c, gtopic, 3)
                prod = SteadyProducer(",".join(c.bootstrap(n) for n in (1, 2, 3)), gtopic)
                cons = Consumer({"bootstrap.servers": ",".join(c.bootstrap(n) for n in (1, 2, 3)), "group.id": group,
                                 "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
                cons.subscribe([gtopic])
                while cons.poll(1.0) is None:
                    pass
                admin = AdminClient({"bootstrap.servers": c.bootstrap(1)})
                coordinator = admin.describe_consumer_groups([group])[group].result(10).coordinator.id
                t0 = time.monotonic()
                c.kill9(coordinator)
                while True:
                    m = cons.poll(0.05)
                    if m is not None and m.error() is None and time.monotonic() - t0 > 0.0:
                        # A record fetched after the kill; the fetch session to a
                        # surviving leader may serve one at once, so require a commit too.
                        try:
                            cons.commit(message=m, asynchronous=False)
                            break
                        except Exception:  # noqa: BLE001 - coordinator moving: retry
                            continue
                out["group_resume_s"].append(time.monotonic() - t0)
                cons.close()
                prod.close()
                c.spawn(coordinator)
                wait(lambda: all_up(c))
                print(f"round {r}: group commit resumed {out['group_resume_s'][-1]:.3f} s after coordinator {coordinator} was killed", file=sys.stderr)
            result = {k: summary(v) for k, v in out.items()}
            for rf in (3, 1):
                topic = f"bench-rf{rf}"
                thr = bench(args, c, topic, rf, 0, 10)
                lat = bench(args, c, topic, rf, args.rate, 10)
                result[f"rf{rf}_acks_all"] = {"unthrottled": thr, f"at_{args.rate}_per_s": lat}
            print(json.dumps(result, indent=2))
        finally:
            c.stop_all()


if __name__ == "__main__":
    main()
