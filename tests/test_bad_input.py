"""Bad input over a raw socket: hand-encoded frames that no well-behaved client
sends. After each, the broker must still serve a normal client on another
connection, with the topic's data intact."""

import struct

import pytest

import kafkawire as kw
from clients import consume, create_topic, produce_all

ERR_NONE = 0
ERR_CORRUPT_MESSAGE = 2
ERR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERR_UNSUPPORTED_VERSION = 35
ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
ERR_INVALID_RECORD = 87


@pytest.fixture
def seeded(any_broker, topic_name):
    """A broker (1 and 2 shards) with a 1-partition topic holding 5 known records."""
    broker = any_broker
    create_topic(broker.bootstrap, topic_name)
    sent = [b"seed-%d" % i for i in range(5)]
    produce_all(broker.bootstrap, topic_name, [{"value": v} for v in sent], acks="all")
    return broker, topic_name, sent


def assert_still_serving(broker, topic, values):
    """The broker is alive, answers /health, and a normal client reads `values` then can append."""
    assert broker.is_running(), "broker process exited\n" + broker.log_tail()
    assert broker.health_status() == 200
    got = consume(broker.bootstrap, topic)
    assert [(m["offset"], m["value"]) for m in got] == list(enumerate(values))
    assert produce_all(broker.bootstrap, topic, [{"value": b"after"}], acks="all") == [(0, len(values))]


def connect(broker):
    return kw.RawConnection("127.0.0.1", broker.kafka_port)


def test_oversized_frame_length_closes_connection(seeded):
    """A frame length over 100 MiB (socket.request.max.bytes) makes the broker close the connection without reading the body."""
    broker, topic, sent = seeded
    with connect(broker) as c:
        c.send(struct.pack(">i", 200 * 1024 * 1024) + b"\x00\x12\x00\x00")
        closed, _ = c.wait_closed(10)
        assert closed, "connection still open 10 s after an oversized frame length"
    assert_still_serving(broker, topic, sent)


def test_negative_frame_length_closes_connection(seeded):
    """A negative frame length makes the broker close the connection."""
    broker, topic, sent = seeded
    with connect(broker) as c:
        c.send(struct.pack(">i", -1) + b"\x00" * 16)
        closed, _ = c.wait_closed(10)
        assert closed, "connection still open 10 s after a negative frame length"
    assert_still_serving(broker, topic, sent)


def test_truncated_frame_then_close_leaves_broker_up(seeded):
    """A frame announced as 100 bytes, of which 10 arrive before the client closes, does not hurt the broker."""
    broker, topic, sent = seeded
    c = connect(broker)
    c.send(struct.pack(">i", 100) + kw.request_header_v1(kw.API_PRODUCE, 3, 1)[:10])
    c.close()
    # and a half-sent frame kept open while others work must not stall them
    with connect(broker) as slow:
        slow.send(struct.pack(">i", 1000) + b"\x00\x03")
        assert_still_serving(broker, topic, sent)


def test_garbage_body_does_not_kill_broker(seeded):
    """A Produce v3 frame whose body is random garbage gets an error or a closed connection, never a crash."""
    broker, topic, sent = seeded
    with connect(broker) as c:
        c.send(kw.frame(kw.request_header_v1(kw.API_PRODUCE, 3, 5) + b"\xff\xfe\x00\x07garbage!" * 3))
        closed, data = c.wait_closed(10)
        assert closed or data, "no response and no close 10 s after an undecodable body"
    assert_still_serving(broker, topic, sent)


def test_unknown_api_key_closes_or_errors(seeded):
    """A request with an unknown API key (9999) is answered with an error or the connection is closed, within 10 s."""
    broker, topic, sent = seeded
    with connect(broker) as c:
        c.send(kw.frame(kw.request_header_v1(9999, 0, 77) + b"\x00" * 8))
        closed, data = c.wait_closed(10)
        if not closed:
            assert len(data) >= 8, "no response and no close 10 s after an unknown API key"
            length, corr = struct.unpack_from(">ii", data, 0)
            assert corr == 77
    assert_still_serving(broker, topic, sent)


def test_api_versions_unsupported_version_gets_v0_error_with_api_list(seeded):
    """ApiVersions at version 99 gets a v0 response with UNSUPPORTED_VERSION (35) and the supported API list (KIP-511); the connection stays usable."""
    broker, topic, sent = seeded
    with connect(broker) as c:
        c.send(kw.api_versions(42, 99))
        err, apis = kw.parse_api_versions_v0_response(c.recv_response(42))
        assert err == ERR_UNSUPPORTED_VERSION
        for key in (kw.API_PRODUCE, kw.API_FETCH, kw.API_METADATA, kw.API_API_VERSIONS):
            assert key in apis, f"api {key} missing from {sorted(apis)}"
        assert apis[kw.API_PRODUCE][0] == 0, "Produce must be advertised from v0 (KAFKA-18659)"
        # a proper request on the same connection then works (v0: no header tags)
        c.send(kw.api_versions(43, 0))
        err, apis2 = kw.parse_api_versions_v0_response(c.recv_response(43))
        assert err == ERR_NONE and apis2 == apis
    assert_still_serving(broker, topic, sent)


def produce_raw(broker, topic, partition, blob, corr=9):
    with connect(broker) as c:
        c.send(kw.produce_v3(corr, topic, partition, blob))
        return kw.parse_produce_v3_response(c.recv_response(corr))


def test_raw_produce_well_formed_batch_is_accepted(seeded):
    """The hand-encoded RecordBatch v2 itself is valid: a raw Produce v3 of it is stored at the next offset (control for the rejection tests)."""
    broker, topic, sent = seeded
    res = produce_raw(broker, topic, 0, kw.record_batch([(b"rk", b"raw-ok")]))
    assert res == {(topic, 0): (ERR_NONE, len(sent))}
    got = consume(broker.bootstrap, topic)
    assert (got[-1]["offset"], got[-1]["key"], got[-1]["value"]) == (len(sent), b"rk", b"raw-ok")


def test_produce_with_bad_crc_is_corrupt_message(seeded):
    """A RecordBatch with a wrong CRC32C is rejected with CORRUPT_MESSAGE (2) and nothing is appended."""
    broker, topic, sent = seeded
    res = produce_raw(broker, topic, 0, kw.record_batch([(None, b"bad-crc")], corrupt_crc=True))
    assert res[(topic, 0)][0] == ERR_CORRUPT_MESSAGE, res
    assert_still_serving(broker, topic, sent)


@pytest.mark.parametrize("magic", [0, 1, 3])
def test_produce_with_wrong_magic_is_rejected(seeded, magic):
    """A batch with magic != 2 (CRC valid over the rest) is rejected with INVALID_RECORD (87), as Kafka answers Produce v3+ with an old or unknown format, and nothing is appended."""
    broker, topic, sent = seeded
    res = produce_raw(broker, topic, 0, kw.record_batch([(None, b"bad-magic")], magic=magic))
    assert res[(topic, 0)][0] == ERR_INVALID_RECORD, res
    assert_still_serving(broker, topic, sent)


def test_produce_truncated_batch_is_corrupt(seeded):
    """A batch whose batchLength claims more bytes than sent is rejected (CORRUPT_MESSAGE) and nothing is appended."""
    broker, topic, sent = seeded
    blob = kw.record_batch([(None, b"x" * 100)])[:-40]
    res = produce_raw(broker, topic, 0, blob)
    assert res[(topic, 0)][0] == ERR_CORRUPT_MESSAGE, res
    assert_still_serving(broker, topic, sent)


def test_produce_to_missing_partition_is_unknown_topic_or_partition(seeded):
    """Produce to partition 7 of a 1-partition topic answers UNKNOWN_TOPIC_OR_PARTITION (3)."""
    broker, topic, sent = seeded
    res = produce_raw(broker, topic, 7, kw.record_batch([(None, b"nowhere")]))
    assert res[(topic, 7)][0] == ERR_UNKNOWN_TOPIC_OR_PARTITION, res
    assert_still_serving(broker, topic, sent)


def test_many_bad_connections_in_a_row(seeded):
    """Fifty connections each sending a different kind of bad frame leave the broker serving and the data intact."""
    broker, topic, sent = seeded
    frames = [
        struct.pack(">i", -5),
        struct.pack(">i", 0x7FFFFFFF),
        struct.pack(">i", 2) + b"\x00\x00",
        kw.frame(kw.request_header_v1(kw.API_METADATA, 4, 1)[:5]),
        kw.frame(b"\x00\x00\x00\x04\x00\x00\x00\x01\x7f\xff"),
    ]
    for i in range(50):
        c = connect(broker)
        try:
            c.send(frames[i % len(frames)])
        except OSError:
            pass
        c.close()
    assert_still_serving(broker, topic, sent)


def test_batch_over_message_max_bytes_is_message_too_large(seeded):
    """A 2 MiB batch (over message.max.bytes, 1 MiB by default) is rejected with MESSAGE_TOO_LARGE (10) and nothing is appended."""
    broker, topic, sent = seeded
    res = produce_raw(broker, topic, 0, kw.record_batch([(None, b"z" * (2 * 1024 * 1024))]))
    assert res[(topic, 0)][0] == 10, res
    assert_still_serving(broker, topic, sent)
