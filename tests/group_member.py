"""A confluent-kafka group member in its own process, so a test can SIGKILL it
(no LeaveGroup, no commit). Prints one JSON line per event on stdout:
{"assigned": [partitions]} on every assignment (the whole set for eager strategies) and
{"p": partition, "o": offset} per record consumed.

usage: group_member.py BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS [strategy]
"""

import json
import sys

from confluent_kafka import Consumer


def main():
    bootstrap, topic, group, session_ms = sys.argv[1:5]
    strategy = sys.argv[5] if len(sys.argv) > 5 else "range"
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": int(session_ms),
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": strategy,
    })

    def show(_consumer, parts):
        # Eager protocols hand over the whole new assignment here.
        print(json.dumps({"assigned": sorted(tp.partition for tp in parts)}), flush=True)

    c.subscribe([topic], on_assign=show)
    while True:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        print(json.dumps({"p": m.partition(), "o": m.offset()}), flush=True)


if __name__ == "__main__":
    main()
