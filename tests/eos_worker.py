"""The exactly-once consume-transform-produce loop of a confluent-kafka
application, in its own process so a test can restart it (as a liveness probe
would) when librdkafka hangs: consume SRC with read_committed, produce each
record upper-cased to DST (same partition) and the consumer's positions in one
transaction, commit; on an abortable error abort and rewind to the committed
offsets, on a fatal one start a new producer (which fences the old).

librdkafka can block in send_offsets_to_transaction past its timeout when the
group coordinator's connection is re-established at the wrong moment
(confluentinc/librdkafka#5456, #5511), which a broker kill -9 provokes. Prints
one line per committed transaction ("committed N") and per error.

usage: eos_worker.py BOOTSTRAP SRC DST GROUP
"""

import random
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def new_producer(bootstrap, txn_id):
    """A transactional producer; init_transactions retried while the broker restarts."""
    deadline = time.monotonic() + 60
    while True:
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
                      "socket.timeout.ms": 10000, "transaction.timeout.ms": 30000, "message.timeout.ms": 20000})
        try:
            p.init_transactions(20)
            return p
        except KafkaException as e:
            print("init: %s" % e.args[0], flush=True)
            if time.monotonic() > deadline:
                raise


def main():
    bootstrap, src, dst, group = sys.argv[1:5]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "socket.timeout.ms": 10000,
                  # A restarted worker replaces this one within seconds.
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 10000})
    c.subscribe([src])
    p = new_producer(bootstrap, group + "-tx")
    committed = 0
    while True:
        msgs = [m for m in c.consume(random.randint(1, 80), 0.5) if not m.error()]
        if not msgs:
            continue
        try:
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, key=m.key(), value=m.value().upper(), partition=m.partition())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            committed += len(msgs)
            print("committed %d" % committed, flush=True)
        except KafkaException as e:
            err = e.args[0]
            print("error: %s" % err, flush=True)
            if err.fatal():
                p = new_producer(bootstrap, group + "-tx")
            else:
                try:
                    p.abort_transaction(30)
                except KafkaException as e2:
                    print("abort: %s" % e2.args[0], flush=True)
                    p = new_producer(bootstrap, group + "-tx")
            for tp in c.committed(c.assignment(), timeout=30):
                c.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))


if __name__ == "__main__":
    main()
