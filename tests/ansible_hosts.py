"""Throwaway Debian hosts for the Ansible tests (tests/test_ansible.py).

Each host is a real machine as far as Ansible can tell: its own root
filesystem (an overlay over one cached debootstrap rootfs), its own network
namespace joined to a bridge the test creates (private subnet 10.213.7.0/24,
the root namespace is 10.213.7.1), systemd as PID 1 (`systemd-nspawn --boot`)
and sshd with a key the test generates. Nothing here touches an address,
bridge or namespace it did not create.

Layout (all removed by `HostLab.close()`, which the fixture finalizer calls):
  netns  fjord-hN            (/run/netns/fjord-hN)
  veth   fjvN <-> eth0        (eth0 inside the netns)
  bridge fjbr7               (10.213.7.1/24)
  cgroup /sys/fs/cgroup/unified/fjord-test-hN
  dirs   WORK/hN/{upper,work,root}  (root = overlay mount)

The cached rootfs lives in /var/cache/fjord-test-rootfs/<key>/ where key
hashes the suite, mirror, package list and recipe version; the first run
builds it with debootstrap (timed and printed), later runs reuse it.

Machine facts this relies on (see the comments where each matters): no
systemd/D-Bus on the machine itself (so `--register=no --keep-unit`, and one
cgroup2 sub-cgroup per nspawn), /proc/sys read-only in the container except
net.* (the container has its own netns), memlock hard limit 8 MiB here
(LimitMEMLOCK=infinity is clamped), CAP_IPC_LOCK kept for mlock, io_uring
syscalls allowed through nspawn's seccomp filter.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("FJORD_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "procps", "iproute2",
            "iputils-ping", "less"]
RECIPE_VERSION = "1"
CACHE_ROOT = Path(os.environ.get("FJORD_TEST_ROOTFS_CACHE", "/var/cache/fjord-test-rootfs"))

SUBNET_PREFIX = "10.213.7"
BRIDGE = "fjbr7"
BRIDGE_ADDR = f"{SUBNET_PREFIX}.1"
CGROUP2 = Path("/sys/fs/cgroup/unified")

# Units a throwaway host does not need: keep boot quick and quiet.
MASKED_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
                "fstrim.timer", "systemd-timesyncd.service", "getty@tty1.service", "console-getty.service",
                "systemd-networkd-wait-online.service"]


def run(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def rootfs_key():
    text = "\n".join([SUITE, MIRROR, ",".join(PACKAGES), RECIPE_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_rootfs(log=print):
    """The cached rootfs directory (built with debootstrap on first use). Returns
    (path, seconds spent building, 0 when cached)."""
    path = CACHE_ROOT / rootfs_key()
    if (path / ".fjord-rootfs-complete").exists():
        return path, 0.0
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{rootfs_key()}-build-", dir=CACHE_ROOT))
    t0 = time.monotonic()
    log(f"building the test rootfs with debootstrap ({SUITE}, {MIRROR}) into {staging} ...")
    try:
        r = run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(staging),
                 MIRROR], check=False)
        if r.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        customize_rootfs(staging)
        (staging / ".fjord-rootfs-complete").write_text(f"{time.time()}\n")
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    took = time.monotonic() - t0
    log(f"debootstrap rootfs built in {took:.1f} s: {path}")
    return path, took


def customize_rootfs(root: Path):
    """What every host shares: masked units, sshd allowed for root with a key,
    no machine-id (each host gets its own), apt caches dropped."""
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    sshd_d = root / "etc/ssh/sshd_config.d"
    sshd_d.mkdir(parents=True, exist_ok=True)
    (sshd_d / "fjord-test.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    (root / "etc/machine-id").write_text("")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def nspawn_works():
    """(ok, reason): can this machine run the hosts at all?"""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces, overlay mounts, systemd-nspawn)"
    for tool in ("systemd-nspawn", "ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed (apt-get install systemd-container iproute2 openssh-client)"
    if not (CGROUP2 / "cgroup.procs").exists():
        return False, f"no cgroup2 hierarchy at {CGROUP2}"
    r = run(["ip", "route", "show", f"{SUBNET_PREFIX}.0/24"], check=False)
    if r.stdout.strip() and BRIDGE not in r.stdout:
        return False, f"{SUBNET_PREFIX}.0/24 is already routed on this machine: {r.stdout.strip()}"
    return True, ""


class Host:
    def __init__(self, lab, index):
        self.lab = lab
        self.index = index
        self.name = f"h{index}"
        self.ip = f"{SUBNET_PREFIX}.{10 + index}"
        self.netns = f"fjord-h{index}"
        self.veth = f"fjv{index}"
        self.cgroup = CGROUP2 / f"fjord-test-h{index}"
        self.dir = lab.work / self.name
        self.root = self.dir / "root"
        self.proc = None
        self.console_log = self.dir / "console.log"
        self.mounted = False
        self.netns_made = False

    # ---------------------------------------------------------------- lifecycle
    def create(self):
        for d in ("upper", "work", "root"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.lab.rootfs},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
             str(self.root)])
        self.mounted = True
        # per-host identity
        (self.root / "etc/machine-id").write_text(hashlib.md5(f"{self.lab.work}{self.name}".encode()).hexdigest()
                                                  + "\n")
        (self.root / "etc/hostname").write_text(self.name + "\n")
        (self.root / "etc/hosts").write_text(f"127.0.0.1 localhost\n{self.ip} {self.name}\n")
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.lab.pubkey)
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        # network: a namespace of our own, a veth into it, joined to our bridge
        run(["ip", "netns", "add", self.netns])
        self.netns_made = True
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
        run(["ip", "link", "set", self.veth, "master", BRIDGE, "up"])
        run(["ip", "-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.netns, "route", "add", "default", "via", BRIDGE_ADDR])
        return self

    def boot(self):
        self.cgroup.mkdir(exist_ok=True)
        nspawn = [
            "systemd-nspawn", "--boot", f"--directory={self.root}", f"--machine=fjord-test-{self.name}",
            # no systemd/D-Bus on this machine: do not register with machined, stay in our cgroup
            "--register=no", "--keep-unit",
            # the network namespace made above; --private-network too, or nspawn treats the
            # namespace as the machine's and mounts /proc/sys/net read-only like the rest
            f"--network-namespace-path=/run/netns/{self.netns}", "--private-network",
            # mlock needs CAP_IPC_LOCK; glommio needs io_uring through the seccomp filter
            "--capability=CAP_IPC_LOCK",
            "--system-call-filter=io_uring_setup io_uring_enter io_uring_register",
            "--console=passive", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
        ]
        log = open(self.console_log, "wb")
        # Each nspawn in its own cgroup2 sub-cgroup (they collide otherwise): the wrapper
        # shell moves itself there, then execs nspawn.
        wrapper = f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"'
        self.proc = subprocess.Popen(["sh", "-c", wrapper, "sh"] + nspawn, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def wait_ssh(self, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: systemd-nspawn exited with {self.proc.returncode}:\n"
                                   + self.console_tail())
            r = self.ssh("true", timeout=5, check=False)
            if r.returncode == 0:
                return
            last = r.stderr.strip()
            time.sleep(0.3)
        raise RuntimeError(f"{self.name}: no ssh within {timeout_s} s ({last}):\n" + self.console_tail())

    def console_tail(self, limit=4000):
        try:
            return self.console_log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def ssh(self, command, timeout=30, check=True):
        r = subprocess.run(["ssh"] + self.lab.ssh_options() + [f"root@{self.ip}", command], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.name}: `{command}` failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def shutdown(self, timeout_s=20):
        if self.proc is not None and self.proc.poll() is None:
            # nspawn turns SIGTERM into an orderly poweroff of the container (SIGRTMIN+3 to its PID 1)
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def destroy(self):
        errors = []
        try:
            self.shutdown()
        except Exception as e:  # keep cleaning
            errors.append(f"shutdown: {e!r}")
        # anything left in our cgroup (there should be nothing) is ours: kill it, then remove the tree
        if self.cgroup.exists():
            kill_cgroup_tree(self.cgroup, errors)
        if self.mounted:
            r = run(["umount", str(self.root)], check=False)
            if r.returncode != 0:
                r = run(["umount", "-l", str(self.root)], check=False)
                if r.returncode != 0:
                    errors.append(f"umount {self.root}: {r.stderr.strip()}")
            self.mounted = False
        if self.netns_made:
            run(["ip", "link", "del", self.veth], check=False)
            r = run(["ip", "netns", "del", self.netns], check=False)
            if r.returncode != 0:
                errors.append(f"ip netns del {self.netns}: {r.stderr.strip()}")
            self.netns_made = False
        return errors


def kill_cgroup_tree(cg: Path, errors):
    children = [p for p in cg.iterdir() if p.is_dir()]
    for child in children:
        kill_cgroup_tree(child, errors)
    for _ in range(50):
        try:
            pids = [int(x) for x in (cg / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    try:
        cg.rmdir()
    except OSError as e:
        errors.append(f"rmdir {cg}: {e}")


class HostLab:
    """The bridge, the ssh key and up to N hosts; `close()` removes everything."""

    def __init__(self, work_dir=None, log=print):
        self.log = log
        self.work = Path(work_dir or tempfile.mkdtemp(prefix="fjord-ansible-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.hosts = {}
        self.bridge_made = False
        self.rootfs, self.rootfs_build_s = ensure_rootfs(log)
        self.key = self.work / "id_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fjord-ansible-test", "-f", str(self.key)])
        self.pubkey = (self.work / "id_ed25519.pub").read_text()
        self.make_bridge()

    def make_bridge(self):
        r = run(["ip", "link", "show", BRIDGE], check=False)
        if r.returncode == 0:
            raise RuntimeError(f"bridge {BRIDGE} already exists (a previous run not cleaned up?): "
                               f"remove it with `ip link del {BRIDGE}`")
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        self.bridge_made = True
        run(["ip", "addr", "add", f"{BRIDGE_ADDR}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])

    def ssh_options(self):
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

    def add_hosts(self, indexes):
        new = []
        for i in indexes:
            h = Host(self, i)
            self.hosts[h.name] = h
            h.create()
            new.append(h)
        for h in new:
            h.boot()
        for h in new:
            h.wait_ssh()
        return new

    def close(self):
        errors = []
        for h in list(self.hosts.values()):
            errors += h.destroy()
        self.hosts.clear()
        if self.bridge_made:
            r = run(["ip", "link", "del", BRIDGE], check=False)
            if r.returncode != 0:
                errors.append(f"ip link del {BRIDGE}: {r.stderr.strip()}")
            self.bridge_made = False
        if not errors:
            shutil.rmtree(self.work, ignore_errors=True)
        return errors
