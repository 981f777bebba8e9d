"""Thin helpers over the real clients used by the black-box tests:
confluent-kafka (librdkafka), kcat and kafkajs (through tests/js/driver.js).

The helpers only shorten the tests; every check lives in the tests themselves.
"""

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TESTS_DIR = Path(__file__).resolve().parent
JS_DRIVER = TESTS_DIR / "js" / "driver.js"
KCAT = shutil.which("kcat") or shutil.which("kafkacat") or "kcat"

def wait_for(predicate, timeout_s=10.0, interval_s=0.1):
    """Polls `predicate` until it returns something true (returned) or the time is up
    (then its last value is returned, for the caller's assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


# -------------------------------------------------------------- confluent-kafka


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap, name, partitions=1, config=None, timeout_s=20, replication_factor=1):
    """Create a topic through the admin API and wait for the result (raises on error)."""
    a = admin(bootstrap)  # must outlive the future: a destroyed handle fails it with _DESTROY
    futures = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config or {})],
        operation_timeout=timeout_s, request_timeout=timeout_s)
    futures[name].result(timeout=timeout_s)


def admin_results(bootstrap, method, arg, timeout_s=20):
    """Call AdminClient.<method>(arg) and wait for every future while the client
    is alive. Returns {key: (KafkaError or None, result or None)}."""
    a = admin(bootstrap)
    futures = getattr(a, method)(arg, request_timeout=timeout_s)
    out = {}
    for key, fut in futures.items():
        try:
            out[key] = (None, fut.result(timeout=timeout_s))
        except KafkaException as e:
            out[key] = (e.args[0], None)
    return out


def admin_error(bootstrap, method, arg, timeout_s=20):
    """The single KafkaError (or None) of a one-item admin call."""
    results = admin_results(bootstrap, method, arg, timeout_s)
    assert len(results) == 1, results
    return next(iter(results.values()))[0]




def producer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "message.timeout.ms": 20000,
        "socket.timeout.ms": 10000,
        "enable.idempotence": False,
    }
    base.update(conf)
    return Producer(base)


def produce_all(bootstrap, topic, records, timeout_s=30, **conf):
    """Produce `records` (dicts: value, key, headers, timestamp, partition) and
    wait for every delivery report. Returns [(partition, offset)] in input order;
    raises AssertionError listing any delivery error."""
    p = producer(bootstrap, **conf)
    results = [None] * len(records)

    def cb(i):
        def on_delivery(err, msg):
            results[i] = (err, msg.partition(), msg.offset())
        return on_delivery

    for i, r in enumerate(records):
        kwargs = {"value": r.get("value"), "key": r.get("key"), "on_delivery": cb(i)}
        if r.get("headers") is not None:
            kwargs["headers"] = r["headers"]
        if r.get("timestamp") is not None:
            kwargs["timestamp"] = r["timestamp"]
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        p.produce(topic, **kwargs)
        p.poll(0)
    remaining = p.flush(timeout_s)
    assert remaining == 0, f"{remaining} records still undelivered after {timeout_s} s"
    errors = [(i, r[0]) for i, r in enumerate(results) if r is None or r[0] is not None]
    assert not errors, f"delivery errors: {errors[:5]}"
    return [(part, off) for _, part, off in results]


def consumer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": "fjord-blackbox-unused",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "socket.timeout.ms": 10000,
    }
    base.update(conf)
    return Consumer(base)


def msg_to_dict(m):
    ts_type, ts = m.timestamp()
    return {
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key(),
        "value": m.value(),
        "headers": m.headers() or [],
        "timestamp": ts,
        "timestamp_type": ts_type,
    }


def consume(bootstrap, topic, partition=0, offset=None, count=None, timeout_s=30, **conf):
    """Read one partition with assign() from `offset` (default: beginning) until
    `count` records were read, or, with count=None, until partition EOF.
    Returns a list of dicts (see msg_to_dict). Raises on client errors."""
    from confluent_kafka import OFFSET_BEGINNING
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING if offset is None else offset)])
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if count is not None and len(out) >= count:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if count is None:
                        return out
                    continue
                raise KafkaException(m.error())
            out.append(msg_to_dict(m))
        if count is not None and len(out) >= count:
            return out
        raise AssertionError(f"consume({topic}/{partition} from {offset}) timed out after {timeout_s} s "
                             f"with {len(out)} records (wanted {count if count is not None else 'EOF'})")
    finally:
        c.close()


def watermarks(bootstrap, topic, partition=0, timeout_s=10):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
    finally:
        c.close()


def topic_metadata(bootstrap, topic=None, timeout_s=10):
    """ClusterMetadata from a consumer handle (which never asks for auto-creation)."""
    c = consumer(bootstrap, **{"allow.auto.create.topics": False})
    try:
        return c.list_topics(topic=topic, timeout=timeout_s)
    finally:
        c.close()


# -------------------------------------------------------------- kcat


def kcat(*args, input_bytes=None, timeout_s=60, check=True):
    """Run kcat; returns CompletedProcess with bytes stdout/stderr."""
    cmd = [KCAT, *args]
    proc = subprocess.run(cmd, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout_s, stdin=None if input_bytes is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout[-4000:]!r}\n"
                             f"stderr: {proc.stderr[-4000:]!r}")
    return proc


def kcat_consume_json(bootstrap, topic, partition=0, offset="beginning", extra=()):
    """kcat -C ... -e -J: list of JSON message objects."""
    proc = kcat("-C", "-b", bootstrap, "-t", topic, "-p", str(partition), "-o", str(offset), "-e", "-J",
                "-q", "-X", "socket.timeout.ms=10000", *extra)
    out = []
    for line in proc.stdout.decode().splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def kcat_consume_exact(bootstrap, topic, partition=0, offset="beginning", extra=()):
    """kcat -C with a length-prefixed format so binary keys/values come back
    byte-exact. Returns [(offset, key|None, value|None)]."""
    fmt = "%o %K %S|%k%s\n"
    proc = kcat("-C", "-b", bootstrap, "-t", topic, "-p", str(partition), "-o", str(offset), "-e", "-q",
                "-f", fmt, *extra)
    data = proc.stdout
    out = []
    pos = 0
    while pos < len(data):
        sp1 = data.index(b" ", pos)
        sp2 = data.index(b" ", sp1 + 1)
        bar = data.index(b"|", sp2 + 1)
        offset_v = int(data[pos:sp1])
        klen = int(data[sp1 + 1:sp2])
        vlen = int(data[sp2 + 1:bar])
        p = bar + 1
        key = None if klen < 0 else data[p:p + klen]
        p += max(klen, 0)
        value = None if vlen < 0 else data[p:p + vlen]
        p += max(vlen, 0)
        assert data[p:p + 1] == b"\n", f"kcat output misparsed at byte {p}"
        pos = p + 1
        out.append((offset_v, key, value))
    return out


# -------------------------------------------------------------- kafkajs


def js(op, bootstrap, timeout_s=60, **params):
    """Run one kafkajs operation through tests/js/driver.js. Returns the parsed
    JSON reply: {"ok": true, "result": ...} or {"ok": false, "error": {...}}."""
    if not (TESTS_DIR / "js" / "node_modules" / "kafkajs").exists():
        raise AssertionError("kafkajs is not installed: run `npm ci` in tests/js")
    request = {"op": op, "brokers": [bootstrap], **params}
    proc = subprocess.run(["node", str(JS_DRIVER)], input=json.dumps(request).encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
    try:
        line = [l for l in proc.stdout.decode().splitlines() if l.startswith("FJORD-REPLY ")][-1]
        reply = json.loads(line[len("FJORD-REPLY "):])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"kafkajs driver gave no JSON reply (exit {proc.returncode})\n"
                             f"stdout: {proc.stdout[-4000:]!r}\nstderr: {proc.stderr[-4000:]!r}")
    reply["stderr"] = proc.stderr.decode(errors="replace")[-4000:]
    return reply


def js_ok(op, bootstrap, **params):
    reply = js(op, bootstrap, **params)
    assert reply["ok"], f"kafkajs {op} failed: {reply.get('error')}\n{reply.get('stderr')}"
    return reply["result"]


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def unb64(s):
    return None if s is None else base64.b64decode(s)


def elect_preferred(bootstrap, topic, partitions, timeout_s=20):
    """AdminClient.elect_leaders(PREFERRED) for `partitions` of `topic`, waited for while the
    client is alive. Returns {partition: KafkaError or None}; raises if the call itself fails."""
    from confluent_kafka import ElectionType
    a = admin(bootstrap)
    # confluent-kafka 2.16's binding rejects request_timeout/operation_timeout here (SystemError):
    # its defaults come from socket.timeout.ms.
    fut = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, p) for p in partitions])
    result = fut.result(timeout=timeout_s + 5)
    return {tp.partition: (None if err is None else (err.args[0] if isinstance(err, KafkaException) else err))
            for tp, err in result.items()}
