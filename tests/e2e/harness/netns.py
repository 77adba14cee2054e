"""Network namespaces joined to the host by a veth pair, with guaranteed cleanup.

Every instance gets its own 198.18.0.0/15 /24 (and 2001:db8:x::/64), chosen under a
file lock so that parallel test runs on the same machine never collide, and never the
198.18.0.0/24 the demo (`make run`) uses.
"""
import atexit
import fcntl
import itertools
import os
import re
import signal
import subprocess

LOCK_PATH = "/run/xgate-e2e-netns.lock"
_counter = itertools.count(1)
_live = set()


def _ip(*args, check=True):
    return subprocess.run(("ip",) + args, capture_output=True, text=True, check=check)


def _subnets_in_use():
    out = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    used = set()
    for a, b in re.findall(r"\b198\.(18|19)\.(\d+)\.\d+", out):
        used.add((int(a) - 18) * 256 + int(b))
    return used


class NetNS:
    """`with NetNS() as ns:` — a namespace ns.name with ns.ns_if (ns.ns_ip/ns.ns_ip6)
    veth-paired to ns.host_if (ns.host_ip/ns.host_ip6) in the root namespace."""

    def __init__(self, prefix="xgt"):
        pid = os.getpid()
        n = next(_counter)
        self.name = "%s-%d-%d" % (prefix, pid, n)
        tag = "%x%d" % (pid & 0xffffff, n)
        self.host_if = ("xh" + tag)[:15]
        self.ns_if = ("xn" + tag)[:15]
        self.index = None
        self._procs = []
        self._created = False

    # -- addresses ------------------------------------------------------------------

    def addr(self, host):
        """IPv4 address .host inside this instance's /24."""
        return "198.%d.%d.%d" % (18 + self.index // 256, self.index % 256, host)

    def addr6(self, host):
        return "2001:db8:%x::%x" % (self.index, host)

    @property
    def subnet(self):
        return self.addr(0) + "/24"

    @property
    def subnet6(self):
        return self.addr6(0) + "/64"

    # -- lifecycle ------------------------------------------------------------------

    def create(self):
        _live.add(self)
        with open(LOCK_PATH, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _subnets_in_use() | {0}
            start = (os.getpid() * 7 + next(_counter)) % 511 + 1
            for i in range(511):
                cand = (start + i) % 512
                if cand not in used:
                    self.index = cand
                    break
            else:
                raise RuntimeError("no free 198.18.0.0/15 /24 for a test namespace")
            self._setup()
        return self

    def _setup(self):
        self.host_ip, self.ns_ip = self.addr(1), self.addr(2)
        self.host_ip6, self.ns_ip6 = self.addr6(1), self.addr6(2)
        self._created = True
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
            "netns", self.name)
        _ip("addr", "add", self.host_ip + "/24", "dev", self.host_if)
        _ip("-6", "addr", "add", self.host_ip6 + "/64", "dev", self.host_if, "nodad")
        _ip("link", "set", self.host_if, "up")
        self.run(["ip", "link", "set", "lo", "up"])
        self.run(["ip", "addr", "add", self.ns_ip + "/24", "dev", self.ns_if])
        self.run(["ip", "-6", "addr", "add", self.ns_ip6 + "/64", "dev", self.ns_if, "nodad"])
        self.run(["ip", "link", "set", self.ns_if, "up"])

    def add_ns_addr(self, host):
        """Adds another IPv4 address .host on the namespace side (e.g. a flood source)."""
        ip = self.addr(host)
        self.run(["ip", "addr", "add", ip + "/24", "dev", self.ns_if])
        return ip

    def add_ns_addr6(self, host):
        ip = self.addr6(host)
        self.run(["ip", "-6", "addr", "add", ip + "/64", "dev", self.ns_if, "nodad"])
        return ip

    def _cmd(self, cmd):
        if isinstance(cmd, str):
            return ["ip", "netns", "exec", self.name, "sh", "-c", cmd]
        return ["ip", "netns", "exec", self.name] + list(cmd)

    def run(self, cmd, check=True, timeout=60, **kw):
        """Runs cmd (list, or str for sh -c) inside the namespace; CompletedProcess (text)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        proc = subprocess.run(self._cmd(cmd), timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError("in netns %s: %s exited %d:\n%s%s" % (
                self.name, cmd, proc.returncode, proc.stdout or "", proc.stderr or ""))
        return proc

    def popen(self, cmd, **kw):
        """Starts cmd in the namespace in the background; killed at cleanup."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(self._cmd(cmd), start_new_session=True, **kw)
        self._procs.append(proc)
        return proc

    def cleanup(self):
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self._procs = []
        if self._created:
            _ip("netns", "del", self.name, check=False)
            # Deleting the namespace destroys the peer and therefore the host side too;
            # be explicit for the case where namespace creation itself failed half-way.
            _ip("link", "del", self.host_if, check=False)
            self._created = False
        _live.discard(self)

    def exists(self):
        return self.name in _ip("netns", "list").stdout.split() or bool(
            _ip("link", "show", self.host_if, check=False).returncode == 0)

    def __enter__(self):
        try:
            return self.create()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


@atexit.register
def _cleanup_all():
    for ns in list(_live):
        ns.cleanup()
