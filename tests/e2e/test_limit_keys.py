"""Keys of L7 limits and the cache (issue 10, classes 9 and 11): IPv6 clients are counted by
their /64 (rate_limit and throttle "by": "ip"); identities are namespaced by credential kind
(a JWT sub is never the API-key consumer of the same name), for rate limits and the cache."""
import base64
import json
import subprocess
import time

import jwt
import pytest

from conftest import NetNS, base_config, free_port, http_request

CLIENT = r"""
import json, socket, sys, time
port, dst, srcs = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
out = []
t0 = time.monotonic()
for src in srcs:
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect((dst, port))
    s.sendall(b"GET /limited HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        got = s.recv(65536)
        if not got:
            break
        data += got
    s.close()
    out.append(int(data.split(b" ")[1]))
print(json.dumps({"st": out, "elapsed": time.monotonic() - t0}))
"""


def statuses(ns, port, dst, srcs, exact=None):
    """Statuses of one GET per source, in order. With `exact`, asserts them; at 1 token/s a
    run slower than 0.9 s may have earned a token back, so then it only checks the
    prefix that cannot depend on timing."""
    out = ns.run(["/usr/bin/python3", "-c", CLIENT, str(port), dst, ",".join(srcs)],
                 timeout=60)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if exact is not None:
        if got["elapsed"] < 0.9:
            assert got["st"] == exact, got
        else:
            first_429 = exact.index(429) if 429 in exact else len(exact)
            assert got["st"][:first_429] == exact[:first_429], got
    return got["st"]


def second_prefix(ns):
    """An address of the namespace in another /64 (2001:db8:<n>:1::/64), routed back."""
    addr = "2001:db8:%x:1::2" % ns.index
    ns.run(["ip", "-6", "addr", "add", addr + "/64", "dev", ns.ns_if, "nodad"])
    subprocess.run(["ip", "-6", "route", "add", "2001:db8:%x:1::/64" % ns.index, "dev",
                    ns.host_if], check=True)
    return addr


@pytest.mark.parametrize("limit,allowed", [
    ({"rate_limit": {"per_s": 1, "burst": 3, "by": "ip"}}, 3),
    # NGINX limit_req: the request itself plus a burst of 3 go at once.
    ({"throttle": {"per_s": 1, "burst": 3, "delay_after": 3, "by": "ip"}}, 4),
])
def test_ipv6_clients_share_their_64(upstream, gateway, limit, allowed):
    with NetNS(prefix="xgk") as ns:
        up = upstream(name="svc")
        port, port6 = free_port(), free_port()
        route = {"name": "limited", "paths": ["/limited"], "upstream": "svc"}
        route.update(limit)
        gateway(base_config(
            upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
            routes=[route],
            listeners=[{"name": "v4", "address": "0.0.0.0:%d" % port},
                       {"name": "v6", "address": "[::]:%d" % port6}]))
        hosts = (2, 0x10, 0x11, 0x12, 0x13, 0x14)
        srcs6 = [ns.addr6(h) for h in hosts]
        for h in hosts[1:]:
            ns.add_ns_addr6(h)
        other = second_prefix(ns)
        time.sleep(0.5)  # addresses usable (nodad) and routes in place
        # Six addresses of one /64: one client.
        statuses(ns, port6, ns.host_ip6, srcs6, exact=[200] * allowed + [429] * (6 - allowed))
        # Another /64 has its own bucket.
        statuses(ns, port6, ns.host_ip6, [other, other, other], exact=[200, 200, 200])
        # IPv4 clients are counted per address.
        for h in (20, 21):
            ns.add_ns_addr(h)
        got = statuses(ns, port, ns.host_ip, [ns.addr(20)] * (allowed + 1) + [ns.addr(21)],
                       exact=[200] * allowed + [429, 200])
        assert got[-1] == 200


SECRET = b"limit-keys-hs256-secret-0123456789abcdef"
ISSUER = "https://issuer.limit.test"


def hs_jwks(path):
    k = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
    path.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "hs", "alg": "HS256", "k": k}]}))


def bearer(sub):
    tok = jwt.encode({"sub": sub, "iss": ISSUER, "exp": int(time.time()) + 600}, SECRET,
                     algorithm="HS256", headers={"kid": "hs"})
    return {"Authorization": "Bearer " + tok}


@pytest.fixture
def identity_gw(gateway, upstream, tmp_path):
    up = upstream(name="svc", headers={"Cache-Control": "max-age=60"})
    jwks = tmp_path / "jwks.json"
    hs_jwks(jwks)
    either = {"any_of": [{"jwt": {}}, {"api_key": {}}]}
    cfg = base_config(
        upstreams=[{"name": "svc", "targets": [{"address": up.address}]}],
        routes=[{"name": "limited", "paths": ["/limited"], "upstream": "svc", "auth": either,
                 "rate_limit": {"per_s": 1, "burst": 2, "by": "consumer"}},
                {"name": "cached", "paths": ["/cached"], "upstream": "svc", "auth": either,
                 "cache": {"ttl_s": 60}}],
        auth={"jwt": {"jwks_file": str(jwks), "algorithms": ["HS256"], "issuer": ISSUER},
              "api_keys": {"header": "X-API-Key"}},
        consumers=[{"name": "mobile-app", "api_keys": ["k-limit-keys-1"], "roles": []}])
    return gateway(cfg), up


def test_rate_limit_identity_namespaces(identity_gw):
    gw, _ = identity_gw
    key = {"X-API-Key": "k-limit-keys-1"}
    jwt_headers = bearer("mobile-app")
    t0 = time.monotonic()
    # The API-key consumer "mobile-app" uses up its bucket ...
    by_key = [http_request("GET", gw.url("/limited"), headers=key).status for _ in range(3)]
    # ... a JWT whose sub is "mobile-app" has its own.
    by_jwt = [http_request("GET", gw.url("/limited"), headers=jwt_headers).status
              for _ in range(3)]
    assert by_key[:2] == [200, 200] and by_jwt[:2] == [200, 200], (by_key, by_jwt)
    if time.monotonic() - t0 < 0.9:  # no token earned back at 1/s meanwhile
        assert by_key[2] == 429 and by_jwt[2] == 429, (by_key, by_jwt)
    # Anonymous requests are refused by auth before any bucket; another sub is fresh.
    assert http_request("GET", gw.url("/limited"), headers=bearer("other")).status == 200


def test_cache_identity_namespaces(identity_gw):
    gw, up = identity_gw
    key = {"X-API-Key": "k-limit-keys-1"}
    r1 = http_request("GET", gw.url("/cached/x"), headers=key)
    assert r1.status == 200
    n = len(up.requests)
    # The same consumer hits the cache ...
    r2 = http_request("GET", gw.url("/cached/x"), headers=key)
    assert r2.status == 200 and len(up.requests) == n and "age" in r2.headers
    # ... a JWT with sub "mobile-app" does not get the API-key consumer's entry.
    r3 = http_request("GET", gw.url("/cached/x"), headers=bearer("mobile-app"))
    assert r3.status == 200 and len(up.requests) == n + 1
    assert up.requests[-1].headers.get("authorization", "").startswith("Bearer ")
    r4 = http_request("GET", gw.url("/cached/x"), headers=bearer("mobile-app"))
    assert r4.status == 200 and len(up.requests) == n + 1
