#!/usr/bin/env python3
"""librdkafka (confluent-kafka) producer latency at a fixed rate, from each
record's intended send time to its delivery report (no coordinated omission).

    .venv/bin/python bench/scripts/rdkafka_latency.py 127.0.0.1:9092 TOPIC 5000 15 all

args: bootstrap, topic, records/s, seconds, acks (all or 1); 1 KiB values,
linger.ms 5, batch.size 1 MB, idempotence with acks=all.
"""

import sys, time, confluent_kafka as ck
bootstrap, topic, rate, secs, acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
p = ck.Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5, "batch.size": 1000000, "enable.idempotence": acks == "all"})
lat = []; errs = [0]
def cb(err, msg, t0):
    if err: errs[0] += 1
    else: lat.append(time.perf_counter() - t0)
val = b"x" * 1024
# Warm up before the clock starts: an idempotent librdkafka producer waits
# for a broker connection and then retries its InitProducerId only on a
# 500 ms timer ("Coordinator not up"), against any broker; that start-up is
# not the steady-state latency this measures.
p.produce(topic, val); p.flush(30)
start = time.perf_counter(); n = 0
while True:
    now = time.perf_counter()
    if now - start >= secs: break
    due = int((now - start) * rate)
    while n < due:
        t0 = start + n / rate  # intended send time: no coordinated omission
        p.produce(topic, val, on_delivery=lambda e, m, t0=t0: cb(e, m, t0)); n += 1
    p.poll(0)
    time.sleep(0.0005)
p.flush(30)
lat.sort(); q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
print(f"{len(lat)} acked {errs[0]} failed p50 {q(0.5):.1f} p99 {q(0.99):.1f} p99.9 {q(0.999):.1f} max {lat[-1]*1000:.1f} ms")
