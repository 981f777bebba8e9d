"""Inputs the fuzzers found to crash the broker are answered by closing the
connection, and the broker keeps serving (each file in fuzz/regressions/ is a
request frame without its length prefix)."""

import socket
import struct
from pathlib import Path

import pytest

import clients

REGRESSIONS = sorted((Path(__file__).resolve().parent.parent / "fuzz" / "regressions" / "request_decode").glob("*"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzzer_found_frame_closes_the_connection_and_the_broker_lives(broker, topic_name, path):
    # Proves a frame that once aborted the broker (e.g. an array count of 1.6 billion in 62 bytes) now only closes its connection.
    payload = path.read_bytes()
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        s.settimeout(10)
        assert s.recv(4096) == b"", "the broker closes the connection"
    assert broker.is_running(), "the broker survived"
    clients.create_topic(broker.bootstrap, topic_name)
    assert clients.produce_all(broker.bootstrap, topic_name, [{"value": b"still here"}]) == [(0, 0)]
