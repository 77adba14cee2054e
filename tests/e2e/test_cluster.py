"""Cluster mode: route rate limits shared by several gateway processes through a real
redis-server the test starts (random loopback port, own directory, killed at cleanup):
the shared limit across nodes, AUTH from ${ENV} + SELECT + key_prefix with expiring keys,
the script cache flushed under the gateway (NOSCRIPT), Redis killed / paused / restarted
mid-load (on_redis_error local, open, closed), the metrics, and config errors with their
JSON paths."""
import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import base_config, free_port, http_request, run_check, scaled, wait_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PASSWORD = "s3cret-cluster-pw"

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS_SERVER),
                                reason="redis-server is not installed")


class Redis:
    """redis-server on 127.0.0.1:<port>, data in its own directory, no persistence."""

    def __init__(self, workdir, password=PASSWORD):
        self.port = free_port()
        self.dir = workdir
        self.password = password
        self.proc = None

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_port(self.port, timeout=10, alive=lambda: self.proc.poll() is None), \
            "redis-server did not start"
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def cli(self, *args, db=0):
        cmd = [REDIS_CLI, "-p", str(self.port), "-n", str(db), "--no-auth-warning"]
        if self.password:
            cmd += ["-a", self.password]
        out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip()


@pytest.fixture
def redis(tmp_path):
    servers = []

    def make(password=PASSWORD):
        d = tmp_path / ("redis%d" % len(servers))
        d.mkdir()
        r = Redis(d, password)
        servers.append(r)
        return r.start()

    yield make
    for r in servers:
        if r.proc and r.proc.poll() is None:
            r.resume()
        r.kill()


def cluster_cfg(up, redis_port, nodes=2, on_error="local", per_s=10, burst=30, db=3,
                prefix="xgt-test:", timeout_ms=200, workers=1, by="route"):
    return base_config(
        upstreams=[up], workers=workers,
        routes=[{"name": "shared", "paths": ["/s"], "upstream": up.name,
                 "rate_limit": {"per_s": per_s, "burst": burst, "by": by,
                                "scope": "cluster"}},
                {"name": "free", "paths": ["/free"], "upstream": up.name}],
        cluster={"redis": {"address": "127.0.0.1:%d" % redis_port,
                           "password": "${XGT_REDIS_PW}", "db": db,
                           "timeout_ms": timeout_ms, "key_prefix": prefix},
                 "nodes": nodes, "on_redis_error": on_error},
        access_log=None)


ENV = {"XGT_REDIS_PW": PASSWORD}


def metric(gw, name, labels=""):
    body = http_request("GET", gw.admin_url + "/metrics").body.decode()
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), body, re.M)
    return float(m.group(1)) if m else None


def wait_up(gw, want=1, timeout=5.0):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if metric(gw, "xgate_cluster_redis_up") == want:
            return True
        time.sleep(0.05)
    return False


def hammer(gws, duration_s, threads_per_gw=3, path="/s"):
    """Keep-alive clients on every gateway for duration_s: {status: count}, the slowest
    answer in seconds, and transport errors."""
    counts, lock, slowest, errors = {}, threading.Lock(), [0.0], []
    retry_after = hammer.retry_after = []
    stop_at = time.monotonic() + duration_s

    def worker(gw):
        conn = None
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port(), timeout=5)
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if status == 429:
                    retry_after.append(resp.getheader("retry-after"))
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                errors.append(repr(e))
                if conn:
                    conn.close()
                conn = None
                continue
            took = time.monotonic() - t0
            with lock:
                counts[status] = counts.get(status, 0) + 1
                slowest[0] = max(slowest[0], took)
        if conn:
            conn.close()

    ts = [threading.Thread(target=worker, args=(gw,)) for gw in gws
          for _ in range(threads_per_gw)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(duration_s + 30)
    return counts, slowest[0], errors


def test_shared_limit_holds_across_nodes(upstream, gateway, redis):
    up = upstream(name="app")
    r = redis()
    gws = [gateway(cluster_cfg(up, r.port, nodes=3, workers=w), env=ENV) for w in (1, 2, 1)]
    for gw in gws:
        assert wait_up(gw), gw.log()
    per_s, burst = 10, 30
    t0 = time.monotonic()
    counts, slowest, errors = hammer(gws, 3.0)
    elapsed = time.monotonic() - t0
    allowed = counts.get(200, 0)
    cap = (burst + per_s * elapsed) * 1.1
    assert not errors, errors[:5]
    assert set(counts) <= {200, 429}, counts
    assert counts.get(429, 0) > 100, counts  # the load was well over the limit
    # Three separate local limits would let through 3x as much.
    assert burst <= allowed <= cap, (counts, elapsed)
    assert slowest < scaled(1.0), slowest
    # Keys live in the configured db under the prefix, and expire.
    key = "xgt-test:rl:shared:route"
    assert r.cli("EXISTS", key, db=3) == "1"
    assert 0 < int(r.cli("PTTL", key, db=3)) <= (burst * 1000) // per_s + 2
    assert r.cli("DBSIZE", db=0) == "0"
    # A 429 carries Retry-After; other routes are not limited.
    assert all(v is not None and int(v) >= 1 for v in hammer.retry_after), hammer.retry_after[:5]
    assert http_request("GET", gws[1].url("/free")).status == 200
    assert metric(gws[0], "xgate_ratelimit_fallback_total", '{route="shared"}') is None


def evalsha_calls(r):
    m = re.search(r"cmdstat_evalsha:calls=(\d+)", r.cli("INFO", "commandstats"))
    return int(m.group(1)) if m else 0


def test_token_leases_admit_most_requests_without_waiting_for_redis(upstream, gateway, redis):
    up = upstream(name="app")
    r = redis()
    gw = gateway(cluster_cfg(up, r.port, nodes=1, per_s=1000000, burst=1000000), env=ENV)
    assert wait_up(gw), gw.log()
    counts, slowest, errors = hammer([gw], 2.0, threads_per_gw=4)
    served = counts.get(200, 0)
    assert not errors and set(counts) == {200}, (counts, errors[:5])
    hits = metric(gw, "xgate_cluster_lease_hits_total")
    waits = metric(gw, "xgate_cluster_lease_waits_total")
    assert hits + waits == served, (hits, waits, served)
    # Steady load: nearly every request takes a leased token, and Redis sees a call per
    # lease refill, not per request.
    assert hits >= 0.8 * served, (hits, waits, served)
    calls = evalsha_calls(r)
    assert 0 < calls <= 0.25 * served, (calls, served)
    assert metric(gw, "xgate_ratelimit_fallback_total", '{route="shared"}') is None


def test_shared_limit_holds_with_leases(upstream, gateway, redis):
    """A limit large enough for leases (burst/10 over 2 nodes x 1 worker = 40 tokens each):
    what the leases hold never lets the fleet past burst + per_s * t + 10 %."""
    up = upstream(name="app")
    r = redis()
    per_s, burst = 300, 800
    gws = [gateway(cluster_cfg(up, r.port, nodes=2, per_s=per_s, burst=burst), env=ENV)
           for _ in range(2)]
    for gw in gws:
        assert wait_up(gw), gw.log()
    t0 = time.monotonic()
    counts, slowest, errors = hammer(gws, 3.0)
    elapsed = time.monotonic() - t0
    allowed = counts.get(200, 0)
    assert not errors, errors[:5]
    assert set(counts) <= {200, 429}, counts
    assert counts.get(429, 0) > 100, counts
    assert burst <= allowed <= (burst + per_s * elapsed) * 1.1, (counts, elapsed)
    assert sum(metric(gw, "xgate_cluster_lease_hits_total") for gw in gws) > 0
    assert slowest < scaled(1.0), slowest


def test_script_cache_flush_reloads_the_script(upstream, gateway, redis):
    up = upstream(name="app")
    r = redis()
    gw = gateway(cluster_cfg(up, r.port, nodes=1, per_s=1000, burst=1000), env=ENV)
    assert wait_up(gw), gw.log()
    assert http_request("GET", gw.url("/s")).status == 200
    assert r.cli("SCRIPT", "FLUSH") == "OK"
    for _ in range(5):
        assert http_request("GET", gw.url("/s")).status == 200
    assert metric(gw, "xgate_ratelimit_fallback_total", '{route="shared"}') is None
    assert metric(gw, "xgate_cluster_redis_up") == 1


def test_redis_killed_mid_load_falls_back_to_local_share_then_shares_again(
        upstream, gateway, redis):
    up = upstream(name="app")
    r = redis()
    nodes, per_s, burst = 2, 10, 30
    gws = [gateway(cluster_cfg(up, r.port, nodes=nodes), env=ENV) for _ in range(nodes)]
    for gw in gws:
        assert wait_up(gw), gw.log()
    hammer(gws, 0.5)  # use up the shared burst
    result = {}

    def load():
        result["run"] = hammer(gws, 3.0)

    t = threading.Thread(target=load)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    r.kill()
    t.join(60)
    elapsed = time.monotonic() - t0
    counts, slowest, errors = result["run"]
    assert not errors, errors[:5]
    assert set(counts) <= {200, 429}, counts
    # Nothing hangs: a request waits for Redis at most about timeout_ms.
    assert slowest < scaled(1.0), slowest
    # Each node enforces per_s/nodes and burst/nodes: together about one limit's worth.
    cap = (burst + per_s * elapsed) * 1.1 + 10
    assert 0 < counts.get(200, 0) <= cap, (counts, elapsed)
    for gw in gws:
        assert metric(gw, "xgate_cluster_redis_up") == 0
        assert metric(gw, "xgate_ratelimit_fallback_total", '{route="shared"}') > 0
        assert re.search(r"redis 127\.0\.0\.1:%d: connection lost" % r.port, gw.log())
    # The local share alone: one node, fresh window, at most burst/nodes + per_s/nodes * t.
    time.sleep(burst / per_s)  # refill every local bucket
    t1 = time.monotonic()
    counts, _, _ = hammer(gws[:1], 1.0)
    local_cap = (burst / nodes + per_s / nodes * (time.monotonic() - t1)) * 1.1 + 1
    assert burst / nodes <= counts.get(200, 0) <= local_cap, counts
    # Restarted on the same port: every node reconnects within about a second.
    r.start()
    for gw in gws:
        assert wait_up(gw, timeout=3.0), gw.log()
    before = [metric(gw, "xgate_ratelimit_fallback_total", '{route="shared"}') for gw in gws]
    t2 = time.monotonic()
    counts, _, errors = hammer(gws, 2.0)
    elapsed = time.monotonic() - t2
    assert not errors
    assert burst <= counts.get(200, 0) <= (burst + per_s * elapsed) * 1.1, counts
    after = [metric(gw, "xgate_ratelimit_fallback_total", '{route="shared"}') for gw in gws]
    assert before == after
    assert r.cli("EXISTS", "xgt-test:rl:shared:route", db=3) == "1"


def test_paused_redis_times_out_instead_of_hanging(upstream, gateway, redis):
    up = upstream(name="app")
    r = redis()
    gw = gateway(cluster_cfg(up, r.port, nodes=1, per_s=1000, burst=1000, timeout_ms=100),
                 env=ENV)
    assert wait_up(gw), gw.log()
    r.pause()
    try:
        t0 = time.monotonic()
        resp = http_request("GET", gw.url("/s"))
        took = time.monotonic() - t0
        assert resp.status == 200  # on_redis_error local, within the local share
        assert took < scaled(0.6), took
        assert gw.wait_log(r"no answer within 100 ms", timeout=5)
        assert wait_up(gw, want=0)
        counts, slowest, errors = hammer([gw], 1.0, threads_per_gw=2)
        assert not errors and counts.get(200, 0) > 0 and slowest < scaled(0.6), (
            counts, slowest)
    finally:
        r.resume()
    assert wait_up(gw, timeout=3.0)


def test_on_redis_error_closed_and_open(tmp_path, upstream, gateway):
    up = upstream(name="app")
    dead = free_port()  # nothing listens there
    closed = gateway(cluster_cfg(up, dead, on_error="closed", per_s=1, burst=1), env=ENV)
    opened = gateway(cluster_cfg(up, dead, on_error="open", per_s=1, burst=1), env=ENV)
    for _ in range(5):
        resp = http_request("GET", closed.url("/s"))
        assert resp.status == 503, resp
        assert resp.json()["error"] == "rate limit store unavailable"
        assert http_request("GET", opened.url("/s")).status == 200
    assert http_request("GET", closed.url("/free")).status == 200
    for gw in (closed, opened):
        assert metric(gw, "xgate_cluster_redis_up") == 0
        assert metric(gw, "xgate_ratelimit_fallback_total", '{route="shared"}') >= 5
    # Redis comes up there: the limit is enforced again (per_s 1, burst 1).
    (tmp_path / "late").mkdir()
    r = Redis(tmp_path / "late")
    r.port = dead
    try:
        r.start()
        assert wait_up(closed, timeout=3.0) and wait_up(opened, timeout=3.0)
        statuses = [http_request("GET", opened.url("/s")).status for _ in range(4)]
        assert statuses.count(200) == 1 and statuses.count(429) == 3, statuses
    finally:
        r.kill()


def test_wrong_password_stays_down_and_logs(upstream, gateway, redis):
    up = upstream(name="app")
    r = redis()
    gw = gateway(cluster_cfg(up, r.port, on_error="closed"), env={"XGT_REDIS_PW": "wrong"})
    assert gw.wait_log(r"AUTH refused", timeout=5)
    assert metric(gw, "xgate_cluster_redis_up") == 0
    assert http_request("GET", gw.url("/s")).status == 503


def test_reload_follows_the_redis_settings(upstream, gateway, redis):
    up = upstream(name="app")
    r1, r2 = redis(), redis()
    # per_s 1: a key lives about a second per token taken, long enough to be seen.
    cfg = cluster_cfg(up, r1.port, nodes=1, per_s=1, burst=1000)
    gw = gateway(cfg, env=ENV)
    assert wait_up(gw), gw.log()
    assert http_request("GET", gw.url("/s")).status == 200
    assert r1.cli("EXISTS", "xgt-test:rl:shared:route", db=3) == "1"
    # Only the prefix changes: the same connection, the new key name.
    cfg["cluster"]["redis"]["key_prefix"] = "p2:"
    gw.reload(cfg)
    assert gw.wait_log(r"generation 2|reload", timeout=5)
    assert wait_for(lambda: http_request("GET", gw.url("/s")).status == 200
                    and r1.cli("EXISTS", "p2:rl:shared:route", db=3) == "1", 3.0)
    assert len(re.findall(r"redis 127\.0\.0\.1:%d: connected" % r1.port, gw.log())) == 1
    # Another server: the worker moves there.
    cfg["cluster"]["redis"]["address"] = "127.0.0.1:%d" % r2.port
    gw.reload(cfg)
    assert gw.wait_log(r"redis 127\.0\.0\.1:%d: connected" % r2.port, timeout=5)
    assert wait_up(gw)
    assert http_request("GET", gw.url("/s")).status == 200
    assert r2.cli("EXISTS", "p2:rl:shared:route", db=3) == "1"
    # No cluster any more: the route must not be cluster-scoped (refused, old one serves).
    bad = dict(cfg)
    bad.pop("cluster")
    gw.reload(bad)
    assert gw.wait_log(r"needs the top-level \"cluster\" section", timeout=5)
    assert http_request("GET", gw.url("/s")).status == 200
    # A local limit without cluster: the connection is closed, the gauge gone.
    bad["routes"][0]["rate_limit"].pop("scope")
    gw.reload(bad)
    assert wait_for(lambda: metric(gw, "xgate_cluster_redis_up") is None, 3.0)
    assert http_request("GET", gw.url("/s")).status == 200


@pytest.mark.parametrize("cluster,route_rl,path,message", [
    (None, {"per_s": 1, "scope": "cluster"}, "routes[0].rate_limit.scope",
     "needs the top-level \"cluster\" section"),
    ({"nodes": 2}, {"per_s": 1}, "cluster.redis", "is required"),
    ({"redis": {}}, {"per_s": 1}, "cluster.redis.address", "is required"),
    ({"redis": {"address": "localhost"}}, {"per_s": 1}, "cluster.redis.address",
     "expected \"host:port\""),
    ({"redis": {"address": "*:6379"}}, {"per_s": 1}, "cluster.redis.address", "wildcard"),
    ({"redis": {"address": "127.0.0.1:6379", "timeout_ms": 0}}, {"per_s": 1},
     "cluster.redis.timeout_ms", ""),
    ({"redis": {"address": "127.0.0.1:6379", "db": -1}}, {"per_s": 1}, "cluster.redis.db", ""),
    ({"redis": {"address": "127.0.0.1:6379", "tls": True}}, {"per_s": 1}, "cluster.redis.tls",
     ""),
    ({"redis": {"address": "127.0.0.1:6379"}, "nodes": 0}, {"per_s": 1}, "cluster.nodes", ""),
    ({"redis": {"address": "127.0.0.1:6379"}, "on_redis_error": "fail"}, {"per_s": 1},
     "cluster.on_redis_error", ""),
    ({"redis": {"address": "127.0.0.1:6379"}}, {"per_s": 1, "scope": "global"},
     "routes[0].rate_limit.scope", ""),
    ("x", {"per_s": 1}, "cluster", ""),
])
def test_config_errors_name_the_json_path(tmp_path, upstream, cluster, route_rl, path, message):
    up = upstream(name="app")
    top = {"cluster": cluster} if cluster is not None else {}
    cfg = base_config(upstreams=[up], routes=[{"name": "r", "paths": ["/"], "upstream": "app",
                                               "rate_limit": route_rl}], **top)
    code, out = run_check(cfg, tmp_path)
    assert code == 1, out
    line = [ln for ln in out.splitlines() if ln.startswith(path + ":")]
    assert line, out
    assert message in line[0], out


def test_valid_cluster_config_checks_ok(tmp_path, upstream):
    up = upstream(name="app")
    code, out = run_check(cluster_cfg(up, 6379), tmp_path, env=ENV)
    assert code == 0 and "configuration OK" in out, out


# ---- cluster deny list (XDP on veths the test creates, in its own namespaces) ----

REACH = ("import socket,sys\n"
         "s=socket.socket(); s.settimeout(0.5)\n"
         "try: s.connect((sys.argv[1], int(sys.argv[2]))); print('ok')\n"
         "except OSError: print('no')\n")


def reachable(ns, host, port):
    return ns.run(["/usr/bin/python3", "-c", REACH, host, str(port)]).stdout.strip() == "ok"


def pinned_deny(pin_dir):
    from conftest import xgatectl
    import json
    out = xgatectl("--pin-dir", pin_dir, "--json", "deny", "list", check=True).stdout
    return {e["cidr"] for e in json.loads(out)}


def wait_for(pred, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture
def edge_nodes(upstream, gateway, redis, NetNS):
    """(redis, [(ns, gw, pin_dir, port)], start(i)): two nodes, each with the XDP shield on
    the veth of its own namespace and its own pin_dir, sharing one Redis."""
    if os.geteuid() != 0:
        pytest.skip("needs root (XDP, namespaces)")
    r = redis()
    up = upstream(name="app")
    pins = ["/sys/fs/bpf/xgate-cl-%d-%d-%d" % (os.getpid(), i, time.monotonic_ns() % 10**6)
            for i in range(2)]
    with NetNS(prefix="xgc") as ns0, NetNS(prefix="xgc") as ns1:
        nodes = []

        def start(i):
            ns = (ns0, ns1)[i]
            port = free_port()
            cfg = cluster_cfg(up, r.port, nodes=2)
            cfg["listeners"] = [{"name": "v4", "address": "0.0.0.0:%d" % port}]
            cfg["edge"] = {"interfaces": [ns.host_if], "mode": "native", "pin_dir": pins[i],
                           "deny": ["203.0.113.0/24"]}
            gw = gateway(cfg, env=ENV)
            nodes.append((ns, gw, pins[i], port))
            return nodes[-1]

        try:
            yield r, nodes, start
        finally:
            for p in pins:
                shutil.rmtree(p, ignore_errors=True)


def test_cluster_deny_reaches_every_node_and_expires(edge_nodes, xgatectl):
    r, nodes, start = edge_nodes
    ns0, gw0, pin0, port0 = start(0)
    assert gw0.wait_log(r"deny list: subscribed", timeout=5)
    # Added before node 1 starts: node 1 loads the whole set when it comes up.
    early = xgatectl("--admin", gw0.admin_url.split("//")[1], "deny", "add", "--cluster",
                     "198.51.100.7/24", check=True)
    assert "198.51.100.0/24" in early.stdout
    ns1, gw1, pin1, port1 = start(1)
    for pin in (pin0, pin1):
        assert wait_for(lambda: "198.51.100.0/24" in pinned_deny(pin), 2.0), pin
    # Through node 0's admin API: node 1 drops the source too, within a second.
    assert reachable(ns1, ns1.host_ip, port1)
    admin0 = gw0.admin_url.split("//")[1]
    t0 = time.monotonic()
    xgatectl("--admin", admin0, "deny", "add", "--cluster", ns1.ns_ip, check=True)
    assert wait_for(lambda: ns1.ns_ip + "/32" in pinned_deny(pin1), 1.0)
    assert time.monotonic() - t0 < scaled(1.5)
    assert not reachable(ns1, ns1.host_ip, port1)
    assert ns1.ns_ip + "/32" in pinned_deny(pin0)
    listed = xgatectl("--admin", admin0, "--json", "deny", "list", "--cluster", check=True)
    assert ns1.ns_ip + "/32" in listed.stdout
    # Deleted on one node: gone everywhere; the config's own entry stays.
    xgatectl("--admin", gw1.admin_url.split("//")[1], "deny", "del", "--cluster", ns1.ns_ip,
             check=True)
    for pin in (pin0, pin1):
        assert wait_for(lambda: ns1.ns_ip + "/32" not in pinned_deny(pin), 1.5), pin
        assert "203.0.113.0/24" in pinned_deny(pin)
    assert reachable(ns1, ns1.host_ip, port1)
    # A TTL: present, then expired everywhere (and out of Redis).
    xgatectl("--admin", admin0, "deny", "add", "--cluster", "192.0.2.0/24", "--ttl", "2s",
             check=True)
    for pin in (pin0, pin1):
        assert wait_for(lambda: "192.0.2.0/24" in pinned_deny(pin), 1.0)
    for pin in (pin0, pin1):
        assert wait_for(lambda: "192.0.2.0/24" not in pinned_deny(pin), 4.0), pin
    assert r.cli("HEXISTS", "xgt-test:deny", "192.0.2.0/24", db=3) == "0"
    # Redis restarted (empty): nodes resubscribe and follow the new set.
    r.kill()
    r.start()
    for gw in (gw0, gw1):
        assert wait_for(lambda: len(re.findall(r"deny list: subscribed", gw.log())) >= 2, 4.0)
    for pin in (pin0, pin1):
        assert wait_for(lambda: "198.51.100.0/24" not in pinned_deny(pin), 2.0)
    xgatectl("--admin", admin0, "deny", "add", "--cluster", "100.64.0.0/10", check=True)
    for pin in (pin0, pin1):
        assert wait_for(lambda: "100.64.0.0/10" in pinned_deny(pin), 1.5)


def test_cluster_deny_errors(upstream, gateway, redis, xgatectl):
    r = redis()
    up = upstream(name="app")
    gw = gateway(cluster_cfg(up, r.port), env=ENV)
    admin = gw.admin_url.split("//")[1]
    bad = xgatectl("--admin", admin, "deny", "add", "--cluster", "300.1.2.3/8")
    assert bad.returncode == 2 and "invalid CIDR" in bad.stderr, bad.stderr
    assert xgatectl("--admin", admin, "deny", "add", "--cluster", "10.0.0.0/8", "--ttl",
                    "5x").returncode == 2
    assert xgatectl("--admin", admin, "deny", "add", "10.0.0.0/8", "--ttl", "5m").returncode == 2
    assert xgatectl("--admin", admin, "allow", "add", "--cluster", "10.0.0.0/8").returncode == 2
    missing = xgatectl("--admin", admin, "deny", "del", "--cluster", "10.9.0.0/16")
    assert missing.returncode == 1 and "not in the cluster deny list" in missing.stderr
    # Written to Redis even without an edge section here (other nodes may have one).
    assert xgatectl("--admin", admin, "deny", "add", "--cluster", "10.0.0.0/8",
                    "--ttl", "10m").returncode == 0
    exp = int(r.cli("HGET", "xgt-test:deny", "10.0.0.0/8", db=3))
    assert 0 < exp - time.time() * 1000 <= 600 * 1000 + 1000
    resp = http_request("POST", gw.admin_url + "/cluster/deny", body=b'{"cidr": 1}')
    assert resp.status == 400
    r.kill()
    down = http_request("POST", gw.admin_url + "/cluster/deny",
                        body=b'{"action": "add", "cidr": "10.1.0.0/16"}')
    assert down.status == 503, down
    plain = gateway(base_config(upstreams=[up], routes=[]))
    resp = http_request("POST", plain.admin_url + "/cluster/deny",
                        body=b'{"action": "add", "cidr": "10.1.0.0/16"}')
    assert resp.status == 409
