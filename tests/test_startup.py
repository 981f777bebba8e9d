"""Start-up: configuration errors and refusals (same data dir, same port)."""

import re
import subprocess

import pytest

from clients import consume, create_topic, produce_all

EXIT_TIMEOUT_S = 15


def run_to_exit(broker):
    """Spawn the broker and expect it to exit by itself; returns (code, output)."""
    proc = broker.spawn()
    try:
        code = proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        broker.kill9()
        raise AssertionError(f"broker kept running {EXIT_TIMEOUT_S} s; it should have refused to start\n"
                             + broker.log_tail())
    broker.proc = None
    return code, broker.log_tail()


@pytest.mark.parametrize("flags,env,pattern", [
    ({"shards": "abc"}, {}, r"shards"),
    ({"shards": "0"}, {}, r"shards"),
    ({"kafka-addr": "nonsense"}, {}, r"kafka[-_.]?addr"),
    ({"kafka-addr": None, "advertised-kafka-addr": None}, {"FJORD_KAFKA_ADDR": "nonsense"}, r"kafka[-_.]?addr"),
    ({"shards": None}, {"FJORD_SHARDS": "abc"}, r"shards"),
    ({}, {"FJORD_AUTO_CREATE_TOPICS_ENABLE": "maybe"}, r"auto[-_.]?create[-_.]?topics[-_.]?enable"),
], ids=["shards-abc", "shards-0", "kafka-addr-flag", "kafka-addr-env", "shards-env", "auto-create-env"])
def test_bad_setting_exits_nonzero_naming_the_setting(broker_factory, flags, env, pattern):
    """A bad setting value (flag or FJORD_* env) makes the broker exit non-zero with a message naming the setting."""
    b = broker_factory(start=False, env=env)
    b.flags.update(flags)  # each flag appears once; a flag set to None is left out so the env value counts
    code, out = run_to_exit(b)
    assert code != 0, out
    assert re.search(pattern, out, re.IGNORECASE), f"message does not name the setting ({pattern}):\n{out}"


def test_env_settings_are_honoured(broker_factory, tmp_path):
    """A broker configured only by FJORD_* environment variables serves Kafka on the address they give."""
    b = broker_factory(start=False)
    b.flags = {}
    b.extra_env.update({
        "FJORD_DATA_DIR": str(tmp_path / "envdata"),
        "FJORD_KAFKA_ADDR": b.kafka_addr,
        "FJORD_ADVERTISED_KAFKA_ADDR": b.kafka_addr,
        "FJORD_ADMIN_ADDR": b.admin_addr,
        "FJORD_SHARDS": "1",
        "FJORD_NODE_ID": "1",
    })
    b.start()
    assert produce_all(b.bootstrap, "env-topic", [{"value": b"hello"}]) == [(0, 0)]
    assert (tmp_path / "envdata").is_dir()


def test_config_file_is_honoured(broker_factory, tmp_path):
    """A broker started with --config fjord.toml takes its data dir and addresses from the file."""
    b = broker_factory(start=False)
    cfg = tmp_path / "fjord.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "tomldata"}"\n'
        f'kafka_addr = "{b.kafka_addr}"\n'
        f'advertised_kafka_addr = "{b.kafka_addr}"\n'
        f'admin_addr = "{b.admin_addr}"\n'
        f'shards = 1\n'
        f'node_id = 1\n')
    b.flags = {"config": cfg}
    b.start()
    assert produce_all(b.bootstrap, "toml-topic", [{"value": b"hello"}]) == [(0, 0)]
    assert (tmp_path / "tomldata").is_dir()


def test_second_broker_on_same_data_dir_refuses_to_start(broker_factory, topic_name):
    """A second broker on a data dir that a running broker uses exits non-zero; the first keeps serving its data."""
    first = broker_factory()
    create_topic(first.bootstrap, topic_name)
    produce_all(first.bootstrap, topic_name, [{"value": b"mine"}])
    second = broker_factory(start=False, data_dir=first.data_dir)
    code, out = run_to_exit(second)
    assert code != 0, out
    assert out.strip(), "refusal printed no message"
    assert first.is_running()
    assert [m["value"] for m in consume(first.bootstrap, topic_name)] == [b"mine"]


def test_second_broker_on_same_kafka_port_refuses_to_start(broker_factory, topic_name):
    """A second broker on the Kafka port of a running broker (other data dir and admin port) exits non-zero; the first keeps serving."""
    first = broker_factory()
    second = broker_factory(start=False, kafka_port=first.kafka_port)
    code, out = run_to_exit(second)
    assert code != 0, out
    assert out.strip(), "refusal printed no message"
    assert first.is_running()
    create_topic(first.bootstrap, topic_name)
    # every new connection must reach the first broker (the second must not be sharing the port)
    for i in range(10):
        assert produce_all(first.bootstrap, topic_name, [{"value": b"%d" % i}]) == [(0, i)]


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["serve", "-h"]])
def test_help_prints_the_settings_and_exits_zero(argv):
    """`fjord --help` and `fjord serve --help` print the usage with the settings and exit 0 (not "flag --help needs a value")."""
    from conftest import FJORD_BIN
    r = subprocess.run([str(FJORD_BIN), *argv], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert "USAGE" in r.stdout and "--kafka-addr" in r.stdout and "--data-dir" in r.stdout, r.stdout[:500]
