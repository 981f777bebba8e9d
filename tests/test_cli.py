"""`fjord topic|group|cluster|offsets`: each subcommand run as the real binary
against a real broker, its output (tables and JSON) checked against what
confluent-kafka sees, plus help, errors, FJORD_BROKERS and unreachable brokers.
"""

import json
import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

import clients
from conftest import FJORD_BIN, Broker, free_port

CLI_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One single-shard broker shared by the module (every test uses its own topics and groups)."""
    base = tmp_path_factory.mktemp("cli")
    b = Broker(base / "data", base, shards=1)
    b.start()
    yield b
    b.stop()


def fjord(broker, *args, input_text=None, env=None, brokers=True, timeout_s=CLI_TIMEOUT_S):
    """Runs `fjord <args> [--brokers <broker>]`; returns the CompletedProcess (text)."""
    cmd = [str(FJORD_BIN), *args]
    if brokers and broker is not None:
        cmd += ["--brokers", broker.bootstrap]
    full_env = dict(os.environ)
    full_env.pop("FJORD_BROKERS", None)
    full_env.update(env or {})
    p = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout_s, env=full_env)
    assert "panicked" not in p.stderr, p.stderr
    return p


def ok(broker, *args, **kw):
    """`fjord` that must succeed; returns stdout."""
    p = fjord(broker, *args, **kw)
    assert p.returncode == 0, f"fjord {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.stdout


def ok_json(broker, *args, **kw):
    return json.loads(ok(broker, *args, "--format", "json", **kw))


def table(text):
    """Rows of an aligned table (header first) as lists of cells."""
    return [line.split() for line in text.splitlines() if line.strip()]


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def consume_and_commit(bootstrap, group, topic, count):
    """A confluent-kafka group member reads `count` records, commits them, and leaves."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m.value())
        c.commit(m, asynchronous=False)
    c.close()
    assert len(got) == count, got
    return got


# ------------------------------------------------------------------ help

HELP_PATHS = [
    ["topic"], ["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"],
    ["topic", "alter-config"], ["topic", "add-partitions"], ["topic", "produce"], ["topic", "consume"],
    ["group"], ["group", "list"], ["group", "describe"], ["group", "seek"], ["group", "delete"],
    ["cluster"], ["cluster", "info"], ["cluster", "health"], ["offsets"],
]


@pytest.mark.parametrize("path", HELP_PATHS, ids=["-".join(p) for p in HELP_PATHS])
def test_help_of_every_subcommand(path):
    """`fjord <cmd> --help` exits 0 and prints that command's usage and the --brokers flag."""
    p = fjord(None, *path, "--help")
    assert p.returncode == 0, p.stderr
    assert f"Usage: fjord {' '.join(path)}" in p.stdout, p.stdout
    assert "--brokers" in p.stdout


def test_top_level_help_lists_commands_and_settings():
    """`fjord --help` lists the admin commands as well as the broker settings."""
    p = fjord(None, "--help")
    assert p.returncode == 0
    for word in ["fjord topic create", "fjord group list", "fjord cluster info", "fjord offsets", "--data-dir"]:
        assert word in p.stdout, p.stdout


# ------------------------------------------------------------------ topics

def test_topic_create_list_describe(broker, topic_name):
    """A topic created with -p/-c shows in list with its partitions and in describe with its config and partitions."""
    out = ok(broker, "topic", "create", topic_name, "-p", "3", "-r", "1", "-c", "retention.ms=123456")
    assert [topic_name, "OK"] in table(out)
    assert [topic_name, "3", "1"] in table(ok(broker, "topic", "list"))
    listed = {t["name"]: t for t in ok_json(broker, "topic", "list")}
    assert listed[topic_name]["partitions"] == 3 and listed[topic_name]["replicas"] == 1

    text = ok(broker, "topic", "describe", topic_name)
    rows = table(text)
    assert ["PARTITIONS", "3"] in rows
    assert ["retention.ms", "123456", "DYNAMIC_TOPIC_CONFIG"] in rows
    for p in range(3):
        assert [str(p), "1", "0", "[1]", "[1]", "0", "0"] in rows, text
    d = ok_json(broker, "topic", "describe", topic_name)
    assert [p["partition"] for p in d["partition_details"]] == [0, 1, 2]
    assert {c["name"]: c["value"] for c in d["configs"]}["retention.ms"] == "123456"
    assert clients.topic_metadata(broker.bootstrap, topic_name)  # confluent sees it too


def test_topic_create_existing_is_an_error(broker, topic_name):
    """Creating a topic twice exits 1 with TOPIC_ALREADY_EXISTS on stderr and in the status column."""
    ok(broker, "topic", "create", topic_name)
    p = fjord(broker, "topic", "create", topic_name)
    assert p.returncode == 1
    assert "TOPIC_ALREADY_EXISTS" in p.stderr and topic_name in p.stderr
    assert [topic_name, "TOPIC_ALREADY_EXISTS"] in table(p.stdout)
    docs = json.loads(fjord(broker, "topic", "create", topic_name, "--format", "json").stdout)
    assert docs[0]["ok"] is False and docs[0]["error"] == "TOPIC_ALREADY_EXISTS"


def test_produce_then_consume_returns_the_lines(broker, topic_name):
    """Lines produced from stdin come back from consume in order, and confluent-kafka reads the same values."""
    ok(broker, "topic", "create", topic_name, "-p", "2")
    lines = [f"line-{i}" for i in range(5)]
    out = ok(broker, "topic", "produce", topic_name, "-p", "1", input_text="\n".join(lines) + "\n")
    assert out.splitlines() == [f"Produced to {topic_name} 1@{i}" for i in range(5)]
    assert ok(broker, "topic", "consume", topic_name, "-n", "5").splitlines() == lines
    got = clients.consume(broker.bootstrap, topic_name, partition=1, offset=0, count=5)
    assert [m["value"] for m in got] == [l.encode() for l in lines]


def test_produce_json_and_keys(broker, topic_name):
    """produce -k/-H --format json reports each record's partition and offset; consume --format json shows key, value and headers."""
    ok(broker, "topic", "create", topic_name, "-p", "3")
    produced = ok_json(broker, "topic", "produce", topic_name, "-k", "user-7", "-H", "src=cli", input_text="a\nb\n")
    assert len(produced) == 2
    part = produced[0]["partition"]
    assert [r["partition"] for r in produced] == [part, part], "one key, one partition"
    assert [r["offset"] for r in produced] == [0, 1]
    out = ok(broker, "topic", "consume", topic_name, "-n", "2", "--format", "json")
    recs = [json.loads(l) for l in out.splitlines()]
    assert [(r["topic"], r["partition"], r["offset"], r["key"], r["value"]) for r in recs] == \
        [(topic_name, part, 0, "user-7", "a"), (topic_name, part, 1, "user-7", "b")]
    assert recs[0]["headers"] == [{"key": "src", "value": "cli"}]
    assert recs[0]["timestamp"] > 1_600_000_000_000
    # confluent-kafka with the same key picks the same partition (murmur2, as the Java client)
    assert clients.produce_all(broker.bootstrap, topic_name, [{"key": b"user-7", "value": b"c"}],
                               partitioner="murmur2_random")[0][0] == part


def test_consume_offsets_partitions_and_format(broker, topic_name):
    """consume -o N / -o @ts / -p / -f pick the start, the partitions and the layout."""
    ok(broker, "topic", "create", topic_name, "-p", "2")
    clients.produce_all(broker.bootstrap, topic_name,
                        [{"value": f"v{i}".encode(), "key": b"k", "partition": 0, "timestamp": 1_000_000 + i}
                         for i in range(4)] + [{"value": b"other", "partition": 1}])
    assert ok(broker, "topic", "consume", topic_name, "-p", "0", "-o", "2", "-n", "2").splitlines() == ["v2", "v3"]
    assert ok(broker, "topic", "consume", topic_name, "-p", "0", "-o", "@1000001", "-n", "1").splitlines() == ["v1"]
    out = ok(broker, "topic", "consume", topic_name, "-p", "1", "-n", "1", "-f", r"%t|%p|%o|%k|%v\n")
    assert out == f"{topic_name}|1|0||other\n"
    out = ok(broker, "topic", "consume", topic_name, "-p", "0", "-n", "1", "-f", r"%o %k %v %d\n")
    assert out == "0 k v0 1000000\n"


def test_consume_reads_compressed_batches(broker, topic_name):
    """Batches that confluent-kafka compressed with gzip, snappy, lz4 and zstd are printed decompressed."""
    ok(broker, "topic", "create", topic_name)
    expected = []
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        values = [f"{codec}-{i}" for i in range(3)]
        clients.produce_all(broker.bootstrap, topic_name, [{"value": v.encode()} for v in values],
                            **{"compression.type": codec, "linger.ms": 50})
        expected += values
    assert ok(broker, "topic", "consume", topic_name, "-n", str(len(expected))).splitlines() == expected


def test_consume_without_num_keeps_waiting(broker, topic_name):
    """consume without -n prints what is there and keeps running for new records until stopped."""
    ok(broker, "topic", "create", topic_name)
    clients.produce_all(broker.bootstrap, topic_name, [{"value": b"first"}])
    proc = subprocess.Popen([str(FJORD_BIN), "topic", "consume", topic_name, "--brokers", broker.bootstrap],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "first\n"
        clients.produce_all(broker.bootstrap, topic_name, [{"value": b"second"}])
        assert proc.stdout.readline() == "second\n"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)


def test_topic_alter_config(broker, topic_name):
    """alter-config --set changes a topic config and --delete returns it to the default."""
    ok(broker, "topic", "create", topic_name)
    out = ok(broker, "topic", "alter-config", topic_name, "--set", "retention.ms=77777", "--set", "cleanup.policy=compact")
    assert [topic_name, "OK"] in table(out)
    configs = {c["name"]: c for c in ok_json(broker, "topic", "describe", topic_name)["configs"]}
    assert configs["retention.ms"]["value"] == "77777" and configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"]["value"] == "compact"
    ok(broker, "topic", "alter-config", topic_name, "--delete", "retention.ms")
    configs = {c["name"]: c for c in ok_json(broker, "topic", "describe", topic_name)["configs"]}
    assert configs["retention.ms"]["source"] == "DEFAULT_CONFIG"
    bad = fjord(broker, "topic", "alter-config", topic_name, "--set", "no.such.config=1")
    assert bad.returncode == 1 and "INVALID_CONFIG" in bad.stderr


def test_topic_add_partitions(broker, topic_name):
    """add-partitions -n 2 on a one-partition topic leaves it with three, as confluent-kafka's metadata shows."""
    ok(broker, "topic", "create", topic_name, "-p", "1")
    out = ok(broker, "topic", "add-partitions", topic_name, "-n", "2")
    assert [topic_name, "OK"] in table(out)
    assert ok_json(broker, "topic", "describe", topic_name)["partitions"] == 3
    md = clients.wait_for(lambda: len(clients.topic_metadata(broker.bootstrap, topic_name).topics[topic_name].partitions) == 3)
    assert md


def test_topic_delete(broker, topic_name):
    """delete removes the topic from list; deleting an unknown topic exits 1 with UNKNOWN_TOPIC_OR_PARTITION."""
    ok(broker, "topic", "create", topic_name)
    assert [topic_name, "OK"] in table(ok(broker, "topic", "delete", topic_name))
    assert clients.wait_for(lambda: topic_name not in ok(broker, "topic", "list"))
    p = fjord(broker, "topic", "delete", topic_name + "-nope")
    assert p.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in p.stderr


def test_offsets(broker, topic_name):
    """offsets shows each partition's earliest and latest offset, and the offset at a timestamp."""
    ok(broker, "topic", "create", topic_name, "-p", "2")
    clients.produce_all(broker.bootstrap, topic_name,
                        [{"value": b"x", "partition": 0, "timestamp": 5_000 + i} for i in range(5)])
    rows = table(ok(broker, "offsets", topic_name, "--timestamp", "5003"))
    assert rows[0] == ["PARTITION", "EARLIEST", "LATEST", "AT-TIMESTAMP"]
    assert ["0", "0", "5", "3"] in rows and ["1", "0", "0", "-"] in rows
    d = ok_json(broker, "offsets", topic_name)
    assert d["partitions"] == [{"partition": 0, "earliest": 0, "latest": 5}, {"partition": 1, "earliest": 0, "latest": 0}]


# ------------------------------------------------------------------ groups

def test_group_list_and_describe_show_lag(broker, topic_name):
    """After a confluent-kafka member commits 3 records and 2 more are produced, describe shows lag 2 and list shows the group."""
    group = f"g-{topic_name}"
    ok(broker, "topic", "create", topic_name)
    clients.produce_all(broker.bootstrap, topic_name, [{"value": f"{i}".encode()} for i in range(3)])
    consume_and_commit(broker.bootstrap, group, topic_name, 3)
    clients.produce_all(broker.bootstrap, topic_name, [{"value": b"3"}, {"value": b"4"}])

    rows = table(ok(broker, "group", "list"))
    assert rows[0] == ["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]
    assert [group, "Empty", "consumer", "1"] in rows
    text = ok(broker, "group", "describe", group)
    rows = table(text)
    assert ["STATE", "Empty"] in rows and ["TOTAL-LAG", "2"] in rows
    assert [topic_name, "0", "3", "0", "5", "2", "-", "-", "-"] in rows, text
    d = ok_json(broker, "group", "describe", group)
    assert d["total_lag"] == 2
    assert d["partitions"] == [{"topic": topic_name, "partition": 0, "committed_offset": 3, "log_start_offset": 0,
                                "log_end_offset": 5, "lag": 2, "member_id": None, "client_id": None, "host": None}]


def test_group_describe_shows_members(broker, topic_name):
    """While a member is subscribed, describe shows state Stable and the member owning the partition."""
    group = f"g-{topic_name}"
    ok(broker, "topic", "create", topic_name)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": "cli-test-member",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic_name])
    try:
        def stable():
            c.poll(0.2)
            d = ok_json(broker, "group", "describe", group)
            return d if d["state"] == "Stable" and d["members"] and d["members"][0]["assignment"] else None
        d = clients.wait_for(stable, timeout_s=30)
        assert d, "group never became Stable with an assignment"
        assert d["members"][0]["client_id"] == "cli-test-member"
        assert d["members"][0]["assignment"] == [{"topic": topic_name, "partition": 0}]
        rows = table(ok(broker, "group", "describe", group))
        assert ["MEMBERS", "1"] in rows
        # seek is refused while the group has a member, as Kafka's tools refuse it
        p = fjord(broker, "group", "seek", group, "--to", "start", "--topics", topic_name)
        assert p.returncode == 1 and "active member" in p.stderr, p.stderr
    finally:
        c.close()


def test_group_seek(broker, topic_name):
    """seek --to start|end|N|@ts moves an empty group's committed offsets, as confluent-kafka's committed() shows."""
    group = f"g-{topic_name}"
    ok(broker, "topic", "create", topic_name, "-p", "2")
    clients.produce_all(broker.bootstrap, topic_name,
                        [{"value": b"x", "partition": p, "timestamp": 10_000 + i} for p in (0, 1) for i in range(4)])
    out = ok(broker, "group", "seek", group, "--to", "end", "--topics", topic_name)
    rows = table(out)
    assert rows[0] == ["TOPIC", "PARTITION", "PRIOR-OFFSET", "CURRENT-OFFSET"]
    assert [topic_name, "0", "-", "4"] in rows and [topic_name, "1", "-", "4"] in rows
    assert committed(broker.bootstrap, group, topic_name, 2) == {0: 4, 1: 4}
    ok(broker, "group", "seek", group, "--to", "start")  # the group's own topics by default
    assert committed(broker.bootstrap, group, topic_name, 2) == {0: 0, 1: 0}
    d = ok_json(broker, "group", "seek", group, "--to", "2")
    assert sorted((p["partition"], p["prior_offset"], p["offset"]) for p in d["partitions"]) == [(0, 0, 2), (1, 0, 2)]
    ok(broker, "group", "seek", group, "--to", "@10003")
    assert committed(broker.bootstrap, group, topic_name, 2) == {0: 3, 1: 3}
    # a consumer of the group now starts where seek put it
    assert ok(broker, "topic", "consume", topic_name, "-g", group, "-p", "0", "-n", "1", "-f", r"%o\n") == "3\n"
    assert committed(broker.bootstrap, group, topic_name, 2)[0] == 4


def test_group_delete(broker, topic_name):
    """delete removes an empty group from list; deleting it again exits 1 with GROUP_ID_NOT_FOUND."""
    group = f"g-{topic_name}"
    ok(broker, "topic", "create", topic_name)
    clients.produce_all(broker.bootstrap, topic_name, [{"value": b"x"}])
    consume_and_commit(broker.bootstrap, group, topic_name, 1)
    assert [group, "OK"] in table(ok(broker, "group", "delete", group))
    assert group not in [g["group"] for g in ok_json(broker, "group", "list")]
    p = fjord(broker, "group", "delete", group)
    assert p.returncode == 1 and "GROUP_ID_NOT_FOUND" in p.stderr


# ------------------------------------------------------------------ cluster

def test_cluster_info(broker):
    """cluster info shows the cluster id, the controller and the broker's id, host and port."""
    rows = table(ok(broker, "cluster", "info"))
    assert ["CONTROLLER", "1"] in rows
    assert ["1*", "127.0.0.1", str(broker.kafka_port), "-"] in rows
    d = ok_json(broker, "cluster", "info")
    assert d["controller_id"] == 1 and d["cluster_id"]
    assert d["brokers"] == [{"id": 1, "host": "127.0.0.1", "port": broker.kafka_port, "rack": None, "controller": True}]


def test_cluster_health(broker, topic_name):
    """cluster health on a healthy broker says so and exits 0."""
    ok(broker, "topic", "create", topic_name, "-p", "2")
    rows = table(ok(broker, "cluster", "health"))
    assert ["HEALTHY", "true"] in rows and ["BROKERS", "[1]"] in rows
    assert ["LEADERLESS-PARTITIONS", "0", "[]"] in rows
    d = ok_json(broker, "cluster", "health")
    assert d["healthy"] is True and d["under_replicated_partitions"] == [] and d["brokers_down"] == []


def test_cluster_unregister_of_an_unknown_broker_names_kafkas_error(broker):
    """cluster unregister --id of a broker that is not registered fails with BROKER_ID_NOT_REGISTERED and exit 1 (the cluster test unregisters a stopped broker)."""
    r = fjord(broker, "cluster", "unregister", "--id", "42")
    assert r.returncode == 1, r
    assert "BROKER_ID_NOT_REGISTERED" in r.stderr and "42" in r.stderr, r.stderr
    assert sorted(ok_json(broker, "cluster", "info")["brokers"][0].keys()) == ["controller", "host", "id", "port", "rack"]


# ------------------------------------------------------------------ flags and errors

def test_fjord_brokers_env_and_global_flags_first(broker, topic_name):
    """FJORD_BROKERS is used without --brokers, and global flags may come before the command word."""
    ok(broker, "topic", "create", topic_name)
    out = ok(None, "topic", "list", env={"FJORD_BROKERS": broker.bootstrap})
    assert topic_name in out
    out = ok(None, "--brokers", broker.bootstrap, "--format", "json", "topic", "list")
    assert topic_name in [t["name"] for t in json.loads(out)]


def test_unreachable_broker_fails_within_the_timeout():
    """A broker that is not there gives a one-line error naming it, exit 1, within the timeout."""
    addr = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    p = fjord(None, "--brokers", addr, "--timeout", "2s", "cluster", "info")
    assert time.monotonic() - start < 10
    assert p.returncode == 1
    assert addr in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.parametrize("args,code,needle", [
    (["topic", "frobnicate"], 2, "frobnicate"),
    (["topic", "create", "x", "-p", "abc"], 2, "abc"),
    (["topic", "create"], 2, "NAME"),
    (["topic", "alter-config", "x"], 2, "--set"),
    (["topic", "alter-config", "x", "--set", "novalue"], 2, "key=value"),
    (["group", "seek", "g", "--to", "bogus"], 2, "bogus"),
    (["topic", "consume", "x", "-o", "-5"], 2, "-5"),
    (["topic", "describe", "no-such-topic-anywhere"], 1, "UNKNOWN_TOPIC_OR_PARTITION"),
    (["offsets", "no-such-topic-anywhere"], 1, "UNKNOWN_TOPIC_OR_PARTITION"),
    (["group", "describe", "no-such-group-anywhere"], 1, "GROUP_ID_NOT_FOUND"),
    (["topic", "produce", "no-such-topic-anywhere"], 1, "UNKNOWN_TOPIC_OR_PARTITION"),
], ids=["unknown-sub", "bad-int", "missing-name", "no-change", "bad-kv", "bad-seek", "negative-offset",
        "describe-missing", "offsets-missing", "group-missing", "produce-missing"])
def test_bad_input_gives_a_clear_error(broker, args, code, needle):
    """Bad arguments exit 2 with a usage error; a missing topic or group exits 1 naming the Kafka error; never a panic."""
    p = fjord(broker, *args, input_text="", timeout_s=60)
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr, p.stderr
