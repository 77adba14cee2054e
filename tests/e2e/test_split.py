"""Canary / blue-green splits: weighted shares over 1,000 requests, match entries that pin,
sticky cookies, a weight change on reload that moves only its share and drops no
connection, and config errors with their JSON paths."""
import json
import socket

from conftest import base_config, http_request, parse_responses


def split_config(stable, canary, w_stable, w_canary, sticky=None, match=None):
    entries = [{"upstream": "users", "weight": w_stable},
               {"upstream": "users-v2", "weight": w_canary}]
    if match:
        entries[1]["match"] = match
    route = {"name": "users", "paths": ["/users"], "split": entries}
    if sticky:
        route["sticky"] = sticky
    return base_config(upstreams=[stable, canary], routes=[route], access_log=None)


def read_response(s):
    """One whole Content-Length response from a keep-alive socket: (status, headers, body)."""
    raw = b""
    while True:
        chunk = s.recv(65536)
        assert chunk, raw
        raw += chunk
        resp = parse_responses(raw)
        if resp and len(resp[0][2]) == int(resp[0][1].get("content-length", -1)):
            return resp[0]


def served_by(r):
    return json.loads(r.body)["upstream"]


def test_split_shares_over_2000_requests(upstream, gateway):
    stable, canary = upstream(name="users"), upstream(name="users-v2")
    gw = gateway(split_config(stable, canary, 80, 20))
    counts = {"users": 0, "users-v2": 0}
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=10) as s:
        for i in range(2000):
            s.sendall(b"GET /users/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            counts[json.loads(read_response(s)[2])["upstream"]] += 1
    # 20 % ± 5 points (the binomial spread over 2,000 is 0.9 points).
    assert 300 <= counts["users-v2"] <= 500, counts
    assert len(stable.requests) + len(canary.requests) == 2000
    metrics = http_request("GET", gw.admin_url + "/metrics").body.decode()
    for name, n in counts.items():
        assert 'xgate_split_requests_total{route="users",upstream="%s"} %d' % (name, n) \
            in metrics, metrics[-2000:]


def test_match_pins_and_sticky_cookie_keeps_clients(upstream, gateway):
    stable, canary = upstream(name="users"), upstream(name="users-v2")
    gw = gateway(split_config(stable, canary, 50, 50, sticky="cookie:uid",
                              match={"headers": {"X-Canary": "always"}}))
    for _ in range(20):
        r = http_request("GET", gw.url("/users"), headers={"X-Canary": "always"})
        assert served_by(r) == "users-v2"
    seen = {}
    for uid in range(60):
        for _ in range(3):
            r = http_request("GET", gw.url("/users"),
                             headers={"Cookie": "theme=dark; uid=user-%d" % uid})
            seen.setdefault(uid, set()).add(served_by(r))
    assert all(len(v) == 1 for v in seen.values()), seen
    on_canary = sum(1 for v in seen.values() if "users-v2" in v)
    assert 12 <= on_canary <= 48, on_canary  # both pools get clients


def test_weight_change_on_reload_moves_only_its_share(upstream, gateway):
    stable, canary = upstream(name="users"), upstream(name="users-v2")
    cfg = split_config(stable, canary, 90, 10, sticky="header:X-User")
    gw = gateway(cfg)
    held = socket.create_connection(("127.0.0.1", gw.port()), timeout=10)
    held.sendall(b"GET /users HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(held)[0] == 200

    def mapping():
        return {u: served_by(http_request("GET", gw.url("/users"),
                                          headers={"X-User": "u%d" % u})) for u in range(300)}

    before = mapping()
    cfg["routes"][0]["split"][1]["weight"] = 40  # canary 10 % -> 40/130 = 31 %
    gw.reload(cfg)
    gw.wait_log(r"generation 2")
    after = mapping()
    moved = [u for u in before if before[u] != after[u]]
    assert all(after[u] == "users-v2" for u in moved), moved  # only towards the canary
    assert 30 <= len(moved) <= 100, len(moved)  # about 21 % of 300
    # The connection opened before the reload is still served.
    held.sendall(b"GET /users HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(held)[0] == 200
    held.close()


def test_split_config_errors_name_their_path(upstream, gateway):
    stable, canary = upstream(name="users"), upstream(name="users-v2")
    cases = []
    cfg = split_config(stable, canary, 1, 1)
    cfg["routes"][0]["split"][1]["upstream"] = "nope"
    cases.append((cfg, "routes[0].split[1].upstream: unknown upstream \"nope\""))
    cfg = split_config(stable, canary, 0, 0)
    cases.append((cfg, "routes[0].split: at least one entry needs a weight above 0"))
    cfg = split_config(stable, canary, 1, 1, sticky="session")
    cases.append((cfg, "routes[0].sticky: \"session\""))
    cfg = base_config(upstreams=[stable], routes=[
        {"name": "r", "paths": ["/"], "upstream": "users", "sticky": "ip"}])
    cases.append((cfg, "routes[0].sticky: needs \"split\""))
    for cfg, message in cases:
        code, output = gateway(cfg, expect_start_failure=True)
        assert code != 0 and message in output, (message, output)
