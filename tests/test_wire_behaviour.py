"""Connection-level behaviour seen on the wire: pipelining, response order, and
acks=0 produce getting no response."""

import kafkawire as kw
from clients import consume, create_topic, produce_all


def test_pipelined_requests_are_answered_in_request_order(broker, topic_name):
    """A long-poll Fetch followed on the same connection by ApiVersions and Metadata is answered in request order (Fetch first) even though the later requests are ready sooner."""
    create_topic(broker.bootstrap, topic_name)
    produce_all(broker.bootstrap, topic_name, [{"value": b"one"}])
    with kw.RawConnection("127.0.0.1", broker.kafka_port, timeout_s=20) as c:
        c.send(kw.fetch_v4(1, topic_name, 0, 1, max_wait_ms=1500)
               + kw.api_versions(2, 0)
               + kw.metadata_v4(3, [topic_name], False))
        err, hw, records = kw.parse_fetch_v4_response(c.recv_response(1))[(topic_name, 0)]
        assert (err, hw, records) == (0, 1, b"")
        err, apis = kw.parse_api_versions_v0_response(c.recv_response(2))
        assert err == 0 and kw.API_FETCH in apis
        assert kw.parse_metadata_v4_response(c.recv_response(3))[topic_name] == (0, [0])


def test_acks_zero_produce_gets_no_response_but_is_stored(broker, topic_name):
    """A raw Produce v3 with acks=0 gets no response: the next response on the connection is for the following request, and the record is stored."""
    create_topic(broker.bootstrap, topic_name)
    with kw.RawConnection("127.0.0.1", broker.kafka_port) as c:
        c.send(kw.produce_v3(10, topic_name, 0, kw.record_batch([(b"k", b"acks0")]), acks=0)
               + kw.api_versions(11, 0))
        body = c.recv_response(11)  # raises if the first response carries correlation id 10
        assert kw.parse_api_versions_v0_response(body)[0] == 0
    got = consume(broker.bootstrap, topic_name, count=1)
    assert [(m["offset"], m["key"], m["value"]) for m in got] == [(0, b"k", b"acks0")]

