"""kafka-python (a pure-Python client with its own protocol code) against Fjord."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from clients import consume


def test_kafka_python_admin_produce_and_assign_consume(broker, topic_name):
    """kafka-python creates a 2-partition topic, produces gzip records with keys, headers and timestamps (acks=all), and reads them back with assign() and no group."""
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        adm.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
    finally:
        adm.close()
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip",
                         enable_idempotence=False,  # idempotent producers (InitProducerId) come later
                         request_timeout_ms=15000)
    futures = [prod.send(topic_name, key=b"k%d" % i, value=b"v%d" % i, partition=i % 2,
                         headers=[("n", b"%d" % i)], timestamp_ms=1_700_000_000_000 + i) for i in range(20)]
    prod.flush(30)
    metas = [f.get(timeout=30) for f in futures]
    prod.close()
    for p in range(2):
        assert sorted(m.offset for m in metas if m.partition == p) == list(range(10))

    cons = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                         request_timeout_ms=31000, fetch_max_wait_ms=200)
    try:
        tp = TopicPartition(topic_name, 1)
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            for recs in cons.poll(timeout_ms=500).values():
                got.extend(recs)
    finally:
        cons.close()
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got] == \
        [(j, b"k%d" % i, b"v%d" % i, [("n", b"%d" % i)], 1_700_000_000_000 + i)
         for j, i in enumerate(range(1, 20, 2))]
    # and librdkafka sees the same partition 0
    assert [m["value"] for m in consume(broker.bootstrap, topic_name, partition=0)] == \
        [b"v%d" % i for i in range(0, 20, 2)]
