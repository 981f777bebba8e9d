"""Subprocess for the idempotent crash test: produce COUNT records with
enable.idempotence=true (acks=all, up to 5 requests in flight) to one
partition, record each ACKNOWLEDGED one as "<offset> <value>\n" in ACK_FILE
(os.write from the delivery callback), keep going across broker restarts
(librdkafka retries with the same producer id and sequences), then flush and
exit 0 if every record was delivered, 1 otherwise (errors on stderr).

Usage: python idempotent_producer.py BOOTSTRAP TOPIC ACK_FILE COUNT
"""

import os
import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, topic, ack_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 1,
        "batch.num.messages": 20,
        "message.timeout.ms": 120000,
        "socket.timeout.ms": 5000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        "retry.backoff.ms": 100,
    })
    errors = []

    def on_delivery(err, msg):
        if err is None:
            os.write(fd, b"%d %s\n" % (msg.offset(), msg.value()))
        else:
            errors.append(str(err))

    for i in range(count):
        value = b"v-%08d" % i
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if i % 20 == 0:
            # Pace the stream so the test can kill the broker mid-way.
            p.poll(0.002)
    left = p.flush(150)
    if left or errors:
        print(f"undelivered {left}, errors {errors[:5]}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.1)
    sys.exit(0)


if __name__ == "__main__":
    main()
