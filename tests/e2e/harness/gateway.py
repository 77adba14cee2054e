"""Starting, probing and stopping build/xgate for end-to-end tests."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from .net import free_port, wait_port
from .timing import scaled

REPO = Path(__file__).resolve().parents[3]
READY_TIMEOUT_S = scaled(10.0)
STOP_TIMEOUT_S = scaled(20.0)
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer)"
    r"|runtime error: |SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)")


def build_dir():
    build = Path(os.environ.get("XGATE_BUILD", "build"))
    return build if build.is_absolute() else REPO / build


def xgate_bin():
    return str(build_dir() / "xgate")


def xgatectl_bin():
    return str(build_dir() / "xgatectl")


def sanitizer_env(env):
    """Adds sanitizer options (harmless for plain builds) unless the caller set them."""
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def sanitizer_report(text):
    """The first sanitizer finding in text with some context, or None."""
    match = SANITIZER_RE.search(text)
    if not match:
        return None
    start = text.rfind("\n", 0, max(0, match.start() - 200)) + 1
    return text[start:match.start() + 4000]


def base_config(upstreams=None, routes=None, **top):
    """A minimal valid config: one HTTP listener and the admin API on free loopback ports.

    upstreams may hold dicts or Upstream objects (one target each). Top-level keys in
    top replace the defaults; a value of None removes the key.
    """
    ups = []
    for up in upstreams or []:
        if isinstance(up, dict):
            ups.append(up)
        else:
            ups.append({"name": up.name, "targets": [{"address": up.address}]})
    cfg = {
        "workers": 1,
        "listeners": [{"name": "public", "address": "127.0.0.1:%d" % free_port()}],
        "admin": {"address": "127.0.0.1:%d" % free_port()},
        "upstreams": ups,
        "routes": list(routes or []),
        "access_log": {"path": "-", "format": "json"},
    }
    for key, value in top.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def _host_port(address):
    """Where to connect to reach a listen address ("0.0.0.0:80", "[::]:80", "h:p")."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


class GatewayError(AssertionError):
    pass


class Gateway:
    def __init__(self, config, workdir, env=None, args=None, binary=None, cwd=None):
        self.config = config
        self.workdir = Path(workdir)
        self.config_path = str(self.workdir / "xgate.json")
        self.log_path = str(self.workdir / "xgate.stderr")
        self.binary = binary or xgate_bin()
        self.args = list(args or [])
        self.cwd = str(cwd or REPO)
        self.env = sanitizer_env(dict(os.environ, **(env or {})))
        # The runtime file xgatectl finds the admin API by (default /run/xgate/admin).
        self.env.setdefault("XGATE_RUNTIME_DIR", str(self.workdir / "run"))
        self.proc = None
        self.pid = None
        self.expected_exit = False  # set when a test ends the process on purpose
        self.write_config(config)

    # -- config ---------------------------------------------------------------------

    def write_config(self, config):
        """Writes config (dict, or str written verbatim) to config_path atomically."""
        self.config = config
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, self.config_path)

    def _listeners(self):
        if not isinstance(self.config, dict):
            return []
        return self.config.get("listeners", [])

    # -- process --------------------------------------------------------------------

    def start(self):
        if not os.path.exists(self.binary):
            raise GatewayError("gateway binary %s does not exist (build it first; "
                               "XGATE_BUILD selects the build dir)" % self.binary)
        self._log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                     stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        self.pid = self.proc.pid
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        targets = [_host_port(lst["address"]) for lst in self._listeners()]
        admin = self.config.get("admin") if isinstance(self.config, dict) else None
        if admin and admin.get("address") and admin.get("enabled", True):
            targets.append(_host_port(admin["address"]))
        for host, port in targets:
            left = deadline - time.monotonic()
            if not wait_port(port, host, timeout=max(left, 0.05), alive=self.alive):
                state = ("exited with code %s" % self.proc.poll() if not self.alive()
                         else "not accepting on %s:%d after %.0fs" % (host, port, timeout))
                raise GatewayError("gateway %s\n--- gateway log ---\n%s" % (state, self.log()))
        return self

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self):
        """Everything the gateway wrote to stderr/stdout so far."""
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=5.0, start=0):
        """Waits until the log (from offset start) matches regex pattern; returns the match."""
        regex = re.compile(pattern)
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log(), start)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError("gateway log has no %r after %.1fs:\n%s" %
                                     (pattern, timeout, self.log()[-4000:]))
            time.sleep(0.05)

    def access_log(self):
        """The JSON lines of the log (access log entries when the path is "-")."""
        out = []
        for line in self.log().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def reload(self, config=None):
        """Optionally rewrites the config, then sends SIGHUP."""
        if config is not None:
            self.write_config(config)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and wait; returns the exit code (SIGKILL and -9 if it hangs)."""
        self.expected_exit = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.hung_on_stop = True
        return self.proc.returncode

    def kill(self):
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # -- addresses ------------------------------------------------------------------

    def port(self, listener=0):
        return _host_port(self._listeners()[listener]["address"])[1]

    def host(self, listener=0):
        return _host_port(self._listeners()[listener]["address"])[0]

    def url(self, path="/", listener=0):
        lst = self._listeners()[listener]
        scheme = "https" if lst.get("tls") else "http"
        host, port = _host_port(lst["address"])
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d%s" % (scheme, host, port, path)

    @property
    def admin_url(self):
        host, port = _host_port(self.config["admin"]["address"])
        return "http://%s:%d" % (host, port)

    # -- teardown -------------------------------------------------------------------

    def finish(self):
        """Stops the process and returns a list of problems found (empty when clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is not None and not self.expected_exit:
            problems.append("gateway exited by itself during the test with code %d" %
                            self.proc.returncode)
        elif self.proc.poll() is None:
            code = self.stop()
            if getattr(self, "hung_on_stop", False):
                problems.append("gateway did not exit within %.0fs of SIGTERM" % STOP_TIMEOUT_S)
            elif code != 0:
                problems.append("gateway exited with code %d after SIGTERM" % code)
        self._log_fh.close()
        report = sanitizer_report(self.log())
        if report:
            problems.append("sanitizer report in gateway stderr:\n" + report)
        return problems


def run_check(config_text_or_dict, workdir, env=None, binary=None):
    """Runs `xgate -t -c FILE`; returns (exit code, combined output)."""
    gw = Gateway(config_text_or_dict, workdir, env=env, binary=binary)
    proc = subprocess.run([gw.binary, "-t", "-c", gw.config_path], capture_output=True,
                          env=gw.env, cwd=gw.cwd, timeout=30)
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()
