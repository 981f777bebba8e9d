"""Subprocess for the crash matrix: produce acks=all round-robin to several
topics, keys from a small key space, and append every ACKNOWLEDGED record to a
file as "<topic index> <offset> <key> <value>\n" from the delivery callback
(os.write: a line in the file was acknowledged before this process could die).

Usage: python crash_matrix_producer.py BOOTSTRAP ACK_FILE PREFIX KEYS TOPIC...
Runs until killed.
"""

import os
import sys

from confluent_kafka import Producer


def main():
    bootstrap, ack_path, prefix, keys = sys.argv[1:5]
    topics = sys.argv[5:]
    keys = int(keys)
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 2,
        "batch.num.messages": 20,
        "message.timeout.ms": 60000,
        "queue.buffering.max.messages": 5000,
        "socket.timeout.ms": 10000,
    })

    def on_delivery(err, msg):
        if err is None:
            t = topics.index(msg.topic())
            os.write(fd, b"%d %d %s %s\n" % (t, msg.offset(), msg.key(), msg.value()))

    i = 0
    while True:
        t = topics[i % len(topics)]
        key = b"k%03d" % ((i // len(topics)) % keys)
        value = b"%s-%08d-" % (prefix.encode(), i) + b"v" * 80
        try:
            p.produce(t, key=key, value=value, partition=0, on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
        if i % 60 == 0:
            p.poll(0.002)


if __name__ == "__main__":
    main()
