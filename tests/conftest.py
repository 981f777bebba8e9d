"""Fixtures that run the REAL release binary for Fjord's black-box tests.

Each broker runs on free loopback ports with its own temporary data dir; its
stdout/stderr go to a log file that is attached to the report of a failing
test. Binary: env FJORD_BIN, default <repo>/target/release/fjord (built by
`cargo build --release --workspace`; the suite never builds it itself).
"""

import os
import resource
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FJORD_BIN = Path(os.environ.get("FJORD_BIN", REPO_ROOT / "target" / "release" / "fjord"))
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_BYTES = 20_000
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the broker binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerFailed(Exception):
    pass


class Broker:
    """One `fjord serve` process; can be stopped, killed and restarted on the same
    data dir and ports."""

    def __init__(self, data_dir: Path, log_dir: Path, shards: int = 1, env=None,
                 extra_args=(), kafka_port=None, admin_port=None):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.shards = shards
        self.extra_env = dict(env or {})
        self.extra_args = list(extra_args)
        self.kafka_port = kafka_port or free_port()
        self.admin_port = admin_port or free_port()
        self.proc = None
        self.starts = 0
        self.log_paths = []
        self.last_exit_code = None
        # Flags passed to `fjord serve`; a test sets one to None to leave it out.
        self.flags = {
            "data-dir": self.data_dir,
            "kafka-addr": self.kafka_addr,
            "advertised-kafka-addr": self.kafka_addr,
            "admin-addr": self.admin_addr,
            "shards": shards,
            "node-id": 1,
        }

    # -- addresses
    @property
    def kafka_addr(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def bootstrap(self) -> str:
        return self.kafka_addr

    @property
    def admin_addr(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def command(self):
        cmd = [str(FJORD_BIN), "serve"]
        for name, value in self.flags.items():
            if value is not None:
                cmd += [f"--{name}", str(value)]
        return cmd + self.extra_args

    # -- lifecycle
    def spawn(self):
        """Start the process without waiting for health."""
        if not FJORD_BIN.exists():
            raise BrokerFailed(f"broker binary {FJORD_BIN} does not exist "
                               "(run `cargo build --release --workspace` or set FJORD_BIN)")
        self.starts += 1
        log_path = self.log_dir / f"fjord-{self.kafka_port}-start{self.starts}.log"
        self.log_paths.append(log_path)
        log = open(log_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        env.update(self.extra_env)
        # A test that isolates brokers by cgroup (nftables) starts each in its own.
        cgroup = getattr(self, "cgroup", None)
        # A test of the broker's own file budget starts it with a small open-file limit.
        nofile = getattr(self, "nofile", None)
        preexec = None
        if cgroup is not None or nofile is not None:
            def preexec():
                if cgroup is not None:
                    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))
                if nofile is not None:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.log_dir,
                                     preexec_fn=preexec)
        log.close()
        return self.proc

    def start(self):
        self.spawn()
        self.wait_healthy()
        return self

    def health_status(self):
        try:
            with urllib.request.urlopen(f"http://{self.admin_addr}/health", timeout=1.0) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return None

    def wait_healthy(self, timeout_s=HEALTH_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.last_exit_code = code
                raise BrokerFailed(f"broker exited with code {code} before /health answered 200\n"
                                   + self.log_tail())
            if self.health_status() == 200:
                return
            time.sleep(0.1)
        raise BrokerFailed(f"/health did not answer 200 within {timeout_s} s\n" + self.log_tail())

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s=STOP_TIMEOUT_S):
        """SIGTERM, wait; kill -9 if it does not exit in time. Returns the exit code
        (negative = killed by that signal)."""
        if self.proc is None:
            return self.last_exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.last_exit_code = "timeout (killed with SIGKILL after SIGTERM)"
                self.proc = None
                return self.last_exit_code
        self.last_exit_code = self.proc.returncode
        self.proc = None
        return self.last_exit_code

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.last_exit_code = None if self.proc is None else self.proc.returncode
        self.proc = None

    def restart(self, hard=False):
        """Stop (SIGTERM, or kill -9 if hard) and start again on the same data dir
        and ports. Returns the exit code of the stopped process."""
        if hard:
            self.kill9()
            code = -9
        else:
            code = self.stop()
        self.start()
        return code

    def log_tail(self, limit=LOG_TAIL_BYTES):
        parts = []
        for p in self.log_paths:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if len(data) > limit:
                data = b"...[cut]...\n" + data[-limit:]
            text = ANSI_ESCAPE.sub("", data.decode(errors="replace"))
            parts.append(f"----- {p.name} -----\n" + text)
        return "\n".join(parts)


# ---------------------------------------------------------------- pytest plumbing

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for broker in getattr(item, "_fjord_brokers", []):
            rep.sections.append((f"fjord broker log ({broker.kafka_addr})", broker.log_tail()))


@pytest.fixture
def broker_factory(request, tmp_path):
    """Make brokers: `broker_factory(shards=1, env={...}, start=True)`. All are
    stopped with SIGTERM (kill -9 fallback) at teardown."""
    brokers = []
    request.node._fjord_brokers = brokers

    def make(shards=1, env=None, extra_args=(), start=True, data_dir=None,
             kafka_port=None, admin_port=None):
        n = len(brokers)
        b = Broker(data_dir or tmp_path / f"data{n}", tmp_path, shards=shards, env=env,
                   extra_args=extra_args, kafka_port=kafka_port, admin_port=admin_port)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in brokers:
        try:
            b.stop()
        except Exception:  # teardown must reach every broker
            b.kill9()


@pytest.fixture
def broker(broker_factory):
    """A started single-shard broker with default settings."""
    return broker_factory(shards=1)


@pytest.fixture
def broker2(broker_factory):
    """A started two-shard broker (partitions spread over shards)."""
    return broker_factory(shards=2)


@pytest.fixture(params=[1, 2], ids=["1shard", "2shards"])
def any_broker(request, broker_factory):
    """A started broker with 1 and then 2 shards (test runs twice)."""
    return broker_factory(shards=request.param)


_counter = [0]


@pytest.fixture
def topic_name(request):
    """A topic name unique to the test."""
    _counter[0] += 1
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:120]
    return f"t-{base}-{_counter[0]}"
