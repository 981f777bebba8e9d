"""`GET /metrics` (Prometheus text format) on the admin port, against the real
binary: it passes `promtool check metrics`, and its samples move with real
traffic from confluent-kafka (bytes in after a produce, bytes out after a
consume, lag after a group's consumer stops and more records arrive)."""

import re
import shutil
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer

from clients import create_topic, wait_for

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(broker):
    with urllib.request.urlopen(f"http://{broker.admin_addr}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def samples(text):
    """[(name, {label: value}, float)] of every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def value(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    found = [v for n, l, v in samples(text) if n == name and all(l.get(k) == str(w) for k, w in labels.items())]
    assert found, f"no sample {name} {labels}"
    return sum(found)


@pytest.fixture(scope="module")
def metrics_broker(tmp_path_factory):
    from conftest import Broker
    d = tmp_path_factory.mktemp("metrics")
    b = Broker(d / "data", d, shards=2)
    b.start()
    yield b
    b.stop()


def produce(bootstrap, topic, n, size=100):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=b"x" * size, key=str(i).encode())
    assert p.flush(30) == 0


def test_promtool_accepts_the_exposition(metrics_broker):
    """The whole exposition, after some traffic, passes `promtool check metrics` (format and naming lint)."""
    create_topic(metrics_broker.bootstrap, "promtool-topic", partitions=2)
    produce(metrics_broker.bootstrap, "promtool-topic", 10)
    text = scrape(metrics_broker)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed (.ci/run installs Debian's prometheus package)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # One HELP/TYPE per family, even though two shards contributed samples.
    types = [l.split()[2] for l in text.splitlines() if l.startswith("# TYPE")]
    assert len(types) == len(set(types)), "a family is split"
    shards_seen = {l["shard"] for n, l, _ in samples(text) if n == "fjord_connections"}
    assert shards_seen == {"0", "1"}, shards_seen


def test_bytes_in_records_in_offsets_and_produce_latency_move_with_a_produce(metrics_broker):
    """1000 records of 100 bytes: bytes in covers them, records in is 1000, the log end offsets add to 1000, Produce requests are counted with a latency histogram and fsyncs are timed."""
    topic = "metrics-in"
    create_topic(metrics_broker.bootstrap, topic, partitions=2)
    before = scrape(metrics_broker)
    produce(metrics_broker.bootstrap, topic, 1000)
    after = scrape(metrics_broker)
    assert value(after, "kafka_server_brokertopicmetrics_messagesin_total", topic=topic) == 1000
    assert value(after, "kafka_server_brokertopicmetrics_bytesin_total", topic=topic) >= 1000 * 100
    assert value(after, "kafka_log_log_logendoffset", topic=topic) == 1000
    assert value(after, "fjord_partition_high_watermark", topic=topic) == 1000
    assert value(after, "kafka_log_log_size", topic=topic) >= 1000 * 100
    assert value(after, "kafka_log_log_numlogsegments", topic=topic) == 2
    assert value(after, "fjord_partition_leader", topic=topic) == 2
    produced = value(after, "kafka_network_requestmetrics_requests_total", request="Produce") - \
        value(before, "kafka_network_requestmetrics_requests_total", request="Produce")
    assert produced >= 1
    assert value(after, "fjord_request_latency_seconds_count", request="Produce") == \
        value(after, "kafka_network_requestmetrics_requests_total", request="Produce")
    assert value(after, "fjord_storage_fsync_seconds_count") > value(before, "fjord_storage_fsync_seconds_count")


def test_bytes_out_and_group_lag_follow_a_consumer_group(metrics_broker):
    """A group consumes 300 records and commits; then 200 more arrive: current offset 300, lag 200, bytes out covers what was read."""
    topic = "metrics-lag"
    create_topic(metrics_broker.bootstrap, topic, partitions=1)
    produce(metrics_broker.bootstrap, topic, 300)
    c = Consumer({"bootstrap.servers": metrics_broker.bootstrap, "group.id": "lag-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.time() + 30
    while got < 300 and time.time() < deadline:
        m = c.poll(1)
        if m is not None and m.error() is None:
            got += 1
    assert got == 300
    c.commit(asynchronous=False)
    c.close()
    produce(metrics_broker.bootstrap, topic, 200)

    def lag():
        text = scrape(metrics_broker)
        try:
            return value(text, "kafka_consumergroup_lag", consumergroup="lag-group", topic=topic, partition=0), text
        except AssertionError:
            return None, text
    wait_for(lambda: lag()[0] == 200, timeout_s=15)
    lag_now, text = lag()
    assert lag_now == 200, lag_now
    assert value(text, "kafka_consumergroup_current_offset", consumergroup="lag-group", topic=topic, partition=0) == 300
    assert value(text, "kafka_server_brokertopicmetrics_bytesout_total", topic=topic) >= 300 * 100


def test_errors_are_counted_by_api_and_kafka_error_name(metrics_broker):
    """A produce with acks=2 is answered INVALID_REQUIRED_ACKS (as Kafka does), and /metrics counts it under that name for Produce."""
    def errors(text):
        found = [v for n, l, v in samples(text) if n == "kafka_network_requestmetrics_errors_total"
                 and l.get("request") == "Produce" and l.get("error") == "INVALID_REQUIRED_ACKS"]
        return sum(found)
    before = errors(scrape(metrics_broker))
    p = Producer({"bootstrap.servers": metrics_broker.bootstrap, "acks": 2, "retries": 0})
    failures = []
    p.produce("metrics-in", value=b"v", on_delivery=lambda err, msg: failures.append(err))
    p.flush(15)
    assert len(failures) == 1 and failures[0] is not None, failures
    assert errors(scrape(metrics_broker)) == before + 1
