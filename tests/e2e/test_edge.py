"""End-to-end tests of the XDP edge shield.

The gateway runs in the root namespace with the shield attached (native XDP) to the host
end of a veth pair the test creates; the legitimate client and the flooders live in the
namespace at the other end. Floods are bounded in packets and time (hping3 -c, timeout).
Pinned maps go to a unique directory under /sys/fs/bpf, removed at teardown.
"""
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import NetNS, base_config, free_port, xgatectl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (XDP, namespaces)")

# The legitimate client: `count` requests, each on a new connection (so each is a SYN the
# shield sees), paced `gap_s` apart; prints {"ok": n, "fail": n}.
CLIENT = r"""
import http.client, json, sys, time
host, port, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ok = fail = 0
for i in range(count):
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, port, timeout=3)
        c.request("GET", "/edge/%d" % i)
        r = c.getresponse()
        r.read()
        c.close()
        ok += r.status == 200
        fail += r.status != 200
    except OSError:
        fail += 1
    time.sleep(max(0.0, gap - (time.monotonic() - t)))
print(json.dumps({"ok": ok, "fail": fail}))
"""


def edge_section(ns, pin_dir, port, port6, **over):
    edge = {
        "interfaces": [ns.host_if], "mode": "native", "pin_dir": pin_dir,
        "allow_tcp_ports": [port, port6],
        "per_ip": {"syn_per_s": 100, "syn_burst": 200, "packets_per_s": 5000,
                   "packets_burst": 10000},
        "udp_per_ip_per_s": 100, "icmp_per_ip_per_s": 10,
        "deny": [], "allow": [],
    }
    edge.update(over)
    return edge


@pytest.fixture
def pin_dir():
    path = "/sys/fs/bpf/xgate-e2e-%d-%d" % (os.getpid(), time.monotonic_ns() % 1000000)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shielded(upstream, gateway, pin_dir):
    """(ns, make_gateway(), port, port6): a namespace and a factory for gateways with the
    shield on its veth; the same config each time, so restarts reuse the pinned maps."""
    with NetNS(prefix="xge") as ns:
        up = upstream(name="svc")
        port, port6 = free_port(), free_port()
        config = base_config(
            upstreams=[up], routes=[{"name": "all", "paths": ["/"], "upstream": "svc"}],
            listeners=[{"name": "v4", "address": "0.0.0.0:%d" % port},
                       {"name": "v6", "address": "[::]:%d" % port6}],
            access_log=None,
            edge=edge_section(ns, pin_dir, port, port6))
        yield ns, lambda: gateway(config), port, port6


def legit(ns, host, port, count=100, gap=0.02):
    out = ns.run(["/usr/bin/python3", "-c", CLIENT, host, str(port), str(count), str(gap)],
                 timeout=count * (gap + 3) + 30)
    return json.loads(out.stdout.strip().splitlines()[-1])


def reachable(ns, host, port):
    return legit(ns, host, port, count=1, gap=0)["ok"] == 1


def xdp_stats(pin_dir):
    """Reason name -> packets, from bpftool's view of the pinned map (BTF field names)."""
    out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pin_dir + "/stats"],
                         capture_output=True, text=True, check=True).stdout
    stats = {}
    for entry in json.loads(out):
        for per_cpu in entry["formatted"]["values"]:
            for reason, packets in per_cpu["value"].items():
                stats[reason] = stats.get(reason, 0) + packets
    return stats


def flood(ns, kind, src, dst, port, count=40000):
    """hping3 from src (an address of the namespace), ~10k packets/s, at most 20 s."""
    proto = ["-S"] if kind == "syn" else ["--udp"]
    return ns.popen(["timeout", "20", "hping3", "-q"] + proto +
                    ["-p", str(port), "-i", "u100", "-c", str(count), "-a", src, dst])


def test_floods_are_dropped_while_legit_traffic_is_served(shielded, pin_dir):
    if not shutil.which("hping3"):
        pytest.skip("hping3 not installed")
    ns, make_gateway, port, _ = shielded
    gw = make_gateway()
    assert "attached in native mode" in gw.wait_log(r"%s: XDP shield attached in \w+ mode"
                                                    % ns.host_if).group(0)
    # libbpf's messages go through the event log: no raw "libbpf:" lines, and a libxdp
    # dispatcher that cannot load is reported in one line, not libbpf's four.
    log = gw.log()
    assert not [line for line in log.splitlines() if line.startswith("libbpf:")], log
    assert len(re.findall(r"dispatcher", log)) <= 1, log
    syn_src, udp_src = ns.add_ns_addr(50), ns.add_ns_addr(51)
    floods = [flood(ns, "syn", syn_src, ns.host_ip, port),
              flood(ns, "udp", udp_src, ns.host_ip, 9999)]
    time.sleep(0.3)
    result = legit(ns, ns.host_ip, port, count=150, gap=0.02)
    for proc in floods:
        proc.wait(timeout=30)
    total = result["ok"] + result["fail"]
    assert total == 150
    assert result["ok"] >= 0.99 * total, result
    stats = xdp_stats(pin_dir)
    assert stats["syn_rate"] > 1000, stats
    assert stats["udp_rate"] > 1000, stats
    assert stats["pass"] >= 150, stats
    # top by drops names the flooders, not the legitimate client.
    top = json.loads(xgatectl("--pin-dir", pin_dir, "--json", "top", "2", "drops",
                              check=True).stdout)
    assert {t["source"] for t in top} == {syn_src + "/32", udp_src + "/32"}
    assert all(t["drops"] > 1000 for t in top)
    # The same counters through xgatectl stats (pinned map read by the library).
    out = xgatectl("--pin-dir", pin_dir, "stats", check=False)
    assert "syn_rate" in out.stdout, out.stdout + out.stderr


def test_port_policy_drops_new_connections_to_closed_ports(shielded, pin_dir):
    ns, make_gateway, port, _ = shielded
    make_gateway()
    before = xdp_stats(pin_dir).get("port", 0)
    # Nothing listens on 1; without the shield the kernel would answer RST at once.
    proc = ns.run(["/usr/bin/python3", "-c",
                   "import socket,sys\n"
                   "s=socket.socket(); s.settimeout(1)\n"
                   "try: s.connect((sys.argv[1], 1)); print('connected')\n"
                   "except ConnectionRefusedError: print('refused')\n"
                   "except OSError: print('timeout')\n", ns.host_ip])
    assert proc.stdout.strip() == "timeout"
    assert xdp_stats(pin_dir)["port"] > before
    assert reachable(ns, ns.host_ip, port)


def net(text):
    return ipaddress.ip_network(text, strict=False)


def deny_cycle(ns, make_gateway, gw, pin_dir, client_ip, host, port):
    assert reachable(ns, host, port)
    xgatectl("--pin-dir", pin_dir, "deny", "add", client_ip, check=True)
    # Blocked at once, no reload.
    assert not reachable(ns, host, port)
    listed = json.loads(xgatectl("--pin-dir", pin_dir, "--json", "deny", "list",
                                 check=True).stdout)
    assert net(client_ip) in {net(e["cidr"]) for e in listed}, listed
    # A restart keeps the operator's entry.
    assert gw.stop() == 0
    gw = make_gateway()
    assert not reachable(ns, host, port)
    assert xdp_stats(pin_dir)["deny"] > 0
    xgatectl("--pin-dir", pin_dir, "deny", "del", client_ip, check=True)
    assert reachable(ns, host, port)
    return gw


def test_deny_blocks_at_once_survives_restart_and_del_restores(shielded, pin_dir):
    ns, make_gateway, port, _ = shielded
    gw = make_gateway()
    deny_cycle(ns, make_gateway, gw, pin_dir, ns.ns_ip, ns.host_ip, port)


def test_ipv6_deny_and_limits(shielded, pin_dir):
    ns, make_gateway, _, port6 = shielded
    gw = make_gateway()
    # http.client takes the bare IPv6 address.
    assert reachable(ns, ns.host_ip6, port6), gw.log()
    gw = deny_cycle(ns, make_gateway, gw, pin_dir, ns.ns_ip6 + "/64", ns.host_ip6, port6)
    # The IPv6 source shows up as its /64 in top.
    top = json.loads(xgatectl("--pin-dir", pin_dir, "--json", "top", "5", check=True).stdout)
    assert any(net(t["source"]) == net(ns.subnet6) for t in top), top


def test_reload_applies_new_rates_and_lists(shielded, pin_dir):
    ns, make_gateway, port, port6 = shielded
    gw = make_gateway()
    assert reachable(ns, ns.host_ip, port)
    config = dict(gw.config)
    config["edge"] = edge_section(ns, pin_dir, port, port6, deny=[ns.subnet])
    gw.reload(config)
    gw.wait_log(r"edge: applied: .* 1 deny")
    assert not reachable(ns, ns.host_ip, port)
    config["edge"] = edge_section(ns, pin_dir, port, port6, deny=[])
    gw.reload(config)
    deadline = time.monotonic() + 5
    while not reachable(ns, ns.host_ip, port):
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.2)


def test_missing_interface_is_a_clear_startup_error(gateway, pin_dir, upstream):
    up = upstream(name="svc")
    config = base_config(upstreams=[up],
                         routes=[{"name": "all", "paths": ["/"], "upstream": "svc"}],
                         edge={"interfaces": ["xgnope0"], "pin_dir": pin_dir})
    code, log = gateway(config, expect_start_failure=True)
    assert code != 0
    assert 'edge.interfaces[0]: interface "xgnope0" does not exist' in log
