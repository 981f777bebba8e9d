"""Subprocess for the crash test: produce acks=all forever, one record at a time in
flight-friendly batches, and append every ACKNOWLEDGED record to a file as
"<partition> <offset> <value>\n" from the delivery callback (written with os.write, so
a record in the file was acknowledged before this process could be killed).

Usage: python crash_producer.py BOOTSTRAP TOPIC ACK_FILE VALUE_PREFIX [PARTITIONS [COMPRESSION]]
Record i goes to partition i % PARTITIONS (default 1); COMPRESSION defaults to none.
Runs until killed (the test sends SIGKILL after killing the broker).
"""

import os
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, ack_path, prefix = sys.argv[1:5]
    partitions = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    compression = sys.argv[6] if len(sys.argv) > 6 else "none"
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,   # no retries across the crash can re-send acknowledged data
        "linger.ms": 2,
        "message.timeout.ms": 60000,
        "queue.buffering.max.messages": 10000,
        "socket.timeout.ms": 10000,
        "compression.type": compression,
    })

    def on_delivery(err, msg):
        if err is None:
            os.write(fd, b"%d %d %s\n" % (msg.partition(), msg.offset(), msg.value()))

    i = 0
    while True:
        value = b"%s-%08d" % (prefix.encode(), i)
        try:
            p.produce(topic, value=value, partition=i % partitions, on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
        if i % 50 == 0:
            p.poll(0.005)


if __name__ == "__main__":
    main()
