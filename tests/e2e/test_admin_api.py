"""End-to-end tests of the admin API's guards (Host check, bearer token, /config redaction
of header matches) and of config deployment (POST /config, generations, rollback) with
xgatectl apply/rollback/generations and the runtime file xgatectl finds the gateway by."""
import http.client
import re

import pytest

from conftest import base_config, http_request

TOKEN = "adm-token-0123456789abcdef"
GET_PATHS = ("/status", "/config", "/metrics", "/stats", "/config/generations")
POST_PATHS = ("/reload", "/config", "/config/rollback")


def route(name, paths, upstream, **kw):
    r = {"name": name, "paths": paths, "upstream": upstream}
    r.update(kw)
    return r


def admin_get(gw, path, host=None, token=None, method="GET", body=None):
    """One admin request with an explicit Host (None: the admin address itself)."""
    hostport = gw.admin_url.split("//", 1)[1]
    h, _, p = hostport.rpartition(":")
    conn = http.client.HTTPConnection(h, int(p), timeout=10)
    headers = {"Host": host or hostport}
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


@pytest.fixture
def guarded(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(upstreams=[a], routes=[route("a", ["/a"], "a")])
    cfg["admin"]["token"] = TOKEN
    return gateway(cfg)


def test_host_check_421(upstream, gateway):
    a = upstream(name="a")
    gw = gateway(base_config(upstreams=[a], routes=[route("a", ["/a"], "a")]))
    port = gw.admin_url.rsplit(":", 1)[1]
    for host in ("127.0.0.1:" + port, "127.0.0.1", "localhost:" + port, "LOCALHOST:" + port):
        status, _, _ = admin_get(gw, "/status", host=host)
        assert status == 200, host
    for host in ("attacker.example:" + port, "attacker.example", "127.0.0.2:" + port,
                 "127.0.0.1:1", "localhost.attacker.example:" + port, "[::1]:" + port):
        for path in GET_PATHS + ("/dashboard", "/nope"):
            status, _, body = admin_get(gw, path, host=host)
            assert status == 421, (host, path, body)
    # A refused POST changes nothing.
    status, _, _ = admin_get(gw, "/reload", host="evil.example", method="POST")
    assert status == 421
    assert http_request("GET", gw.admin_url + "/status").json()["config"]["generation"] == 1


def test_token_required(guarded):
    gw = guarded
    for path in GET_PATHS:
        status, headers, _ = admin_get(gw, path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer")
        status, _, _ = admin_get(gw, path, token=TOKEN[:-1] + "x")
        assert status == 401, path
        status, _, _ = admin_get(gw, path, token=TOKEN)
        assert status == 200, path
    for path in POST_PATHS:
        status, _, _ = admin_get(gw, path, method="POST", body=b"{}")
        assert status == 401, path
    # The dashboard page carries no data: it loads without the token (its scripts send it).
    status, _, body = admin_get(gw, "/dashboard")
    assert status == 200 and b"<html" in body
    # The Host check comes first, token or not.
    assert admin_get(gw, "/status", host="evil.example", token=TOKEN)[0] == 421


def test_metrics_public(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(upstreams=[a], routes=[route("a", ["/a"], "a")])
    cfg["admin"].update(token=TOKEN, metrics_public=True)
    gw = gateway(cfg)
    assert admin_get(gw, "/metrics")[0] == 200
    assert admin_get(gw, "/status")[0] == 401


def test_admin_config_errors(tmp_path):
    from conftest import run_check
    for admin, needle in (({"address": "127.0.0.1:1", "token": 5}, "admin.token: must be a string"),
                          ({"address": "127.0.0.1:1", "token": "short"},
                           "admin.token: must be at least 16 characters"),
                          ({"address": "127.0.0.1:1", "metrics_public": "yes"},
                           "admin.metrics_public"),
                          ({"address": "127.0.0.1:1", "tokens": "x"}, "admin.tokens")):
        code, out = run_check(base_config(admin=admin), tmp_path)
        assert code != 0 and needle in out, (admin, out)


def test_config_redacts_header_matches(upstream, gateway):
    a = upstream(name="a")
    b = upstream(name="b")
    cfg = base_config(upstreams=[a, b], routes=[
        route("a", ["/a"], "a", headers={"X-Shared": "MATCH-SECRET-1"},
              split=[{"upstream": "b", "weight": 0, "match": {"headers": {"X-C": "MATCH-SECRET-2"}}},
                     {"upstream": "a", "weight": 1}])])
    gw = gateway(cfg)
    r = http_request("GET", gw.admin_url + "/config")
    assert r.status == 200
    assert b"MATCH-SECRET-1" not in r.body and b"MATCH-SECRET-2" not in r.body
    assert r.json()["routes"][0]["headers"]["X-Shared"] == "<redacted>"


# ---- config deployment -------------------------------------------------------------------

import json
import os

from conftest import xgatectl


def deploy_config(a, b, route_to="a", token=None):
    cfg = base_config(upstreams=[a, b], routes=[route("r", ["/r"], route_to)])
    if token:
        cfg["admin"]["token"] = token
    return cfg


def post(gw, path, body, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http_request("POST", gw.admin_url + path, body=data, headers=headers)


def serves(gw, text):
    r = http_request("GET", gw.url("/r"))
    return r.status == 200 and text.encode() in r.body


def generations(gw, token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    r = http_request("GET", gw.admin_url + "/config/generations", headers=headers)
    assert r.status == 200, r
    return r.json()["generations"]


@pytest.fixture
def deploy(upstream, gateway):
    a = upstream(name="a", body=b"from-a")
    b = upstream(name="b", body=b"from-b")
    gw = gateway(deploy_config(a, b))
    gw.a, gw.b = a, b
    assert serves(gw, "from-a")
    return gw


def test_apply_good_bad_rollback(deploy):
    gw = deploy
    cfg_b = deploy_config(gw.a, gw.b, route_to="b")
    cfg_b["listeners"] = gw.config["listeners"]
    cfg_b["admin"] = gw.config["admin"]
    r = post(gw, "/config", cfg_b)
    assert r.status == 200 and r.json() == {"status": "ok", "generation": 2}, r
    assert serves(gw, "from-b")
    # Bad configs: 400 with every JSON path; the running config keeps serving.
    bad = json.loads(json.dumps(cfg_b))
    bad["routes"][0]["upstream"] = "nope"
    bad["limits"] = {"max_body_bytes": -1}
    r = post(gw, "/config", bad)
    assert r.status == 400, r
    errors = r.json()["errors"]
    assert any(e.startswith("routes[0].upstream: ") for e in errors), errors
    assert any(e.startswith("limits.max_body_bytes") for e in errors), errors
    r = post(gw, "/config", b"{ not json")
    assert r.status == 400 and "body:1:" in r.json()["errors"][0], r
    r = post(gw, "/config", b"[]")
    assert r.status == 400 and r.json()["errors"], r
    assert serves(gw, "from-b")
    gens = generations(gw)
    assert [(g["generation"], g["source"]) for g in gens] == [(1, "file"), (2, "api")]
    for g in gens:
        assert re.fullmatch(r"[0-9a-f]{64}", g["sha256"]) and g["time"] > 0
    assert gens[0]["sha256"] != gens[1]["sha256"]
    # Bare rollback: the generation before the current one.
    r = post(gw, "/config/rollback", b"")
    assert r.status == 200 and r.json()["generation"] == 3, r
    assert serves(gw, "from-a")
    gens = generations(gw)
    assert gens[-1]["source"] == "rollback" and gens[-1]["sha256"] == gens[0]["sha256"]
    # Rollback to N.
    r = post(gw, "/config/rollback", {"generation": 2})
    assert r.status == 200 and r.json()["generation"] == 4
    assert serves(gw, "from-b") and generations(gw)[-1]["sha256"] == gens[1]["sha256"]
    # Bad rollbacks.
    r = post(gw, "/config/rollback", {"generation": 99})
    assert r.status == 404 and "generation 99" in r.json()["errors"][0], r
    for body, needle in ((b"{\"generation\": 0}", "generation"), (b"{\"gen\": 1}", "gen"),
                         (b"[1]", "JSON object"), (b"{\"generation\": \"2\"}", "generation")):
        r = post(gw, "/config/rollback", body)
        assert r.status == 400 and needle in r.json()["errors"][0], (body, r)
    assert serves(gw, "from-b")
    st = http_request("GET", gw.admin_url + "/status").json()
    assert st["config"]["generation"] == 4


def test_generations_keep_the_last_ten(deploy):
    gw = deploy
    for i in range(12):
        assert post(gw, "/config", gw.config).status == 200
    gens = generations(gw)
    assert [g["generation"] for g in gens] == list(range(4, 14))
    assert post(gw, "/config/rollback", {"generation": 1}).status == 404
    assert post(gw, "/config/rollback", {"generation": 4}).status == 200


def test_deploy_token_required(upstream, gateway):
    a = upstream(name="a", body=b"from-a")
    b = upstream(name="b", body=b"from-b")
    gw = gateway(deploy_config(a, b, token=TOKEN))
    cfg_b = json.loads(json.dumps(gw.config))
    cfg_b["routes"][0]["upstream"] = "b"
    assert post(gw, "/config", cfg_b).status == 401
    assert post(gw, "/config/rollback", b"").status == 401
    assert http_request("GET", gw.admin_url + "/config/generations").status == 401
    assert serves(gw, "from-a")
    assert post(gw, "/config", cfg_b, token=TOKEN).status == 200
    assert serves(gw, "from-b")
    assert len(generations(gw, TOKEN)) == 2


def test_xgatectl_deploy_commands(upstream, gateway, tmp_path):
    a = upstream(name="a", body=b"from-a")
    b = upstream(name="b", body=b"from-b")
    gw = gateway(deploy_config(a, b, token=TOKEN))
    env = {"XGATE_RUNTIME_DIR": gw.env["XGATE_RUNTIME_DIR"], "XGATE_ADMIN_TOKEN": TOKEN}
    runtime = os.path.join(env["XGATE_RUNTIME_DIR"], "admin")
    with open(runtime) as fh:
        assert fh.read().strip() == gw.admin_url.split("//", 1)[1]
    # No --admin: found through the runtime file.
    p = xgatectl("stats", "--pin-dir", "/nonexistent-xgate-pins", env=env)
    assert p.returncode == 0 and "xgate_config_generation" in p.stdout, p.stderr
    p = xgatectl("status", env=dict(env, XGATE_ADMIN_TOKEN=""))
    assert p.returncode == 1, p
    good = tmp_path / "good.json"
    cfg_b = json.loads(json.dumps(gw.config))
    cfg_b["routes"][0]["upstream"] = "b"
    good.write_text(json.dumps(cfg_b))
    p = xgatectl("apply", good, env=env)
    assert p.returncode == 0 and "applied: generation 2" in p.stdout, p.stdout + p.stderr
    assert serves(gw, "from-b")
    bad = tmp_path / "bad.json"
    cfg_b["routes"][0]["upstream"] = "nope"
    bad.write_text(json.dumps(cfg_b))
    p = xgatectl("apply", bad, env=env)
    assert p.returncode == 1 and "routes[0].upstream:" in p.stderr, p.stdout + p.stderr
    assert "keeps serving" in p.stderr
    assert serves(gw, "from-b")
    p = xgatectl("rollback", env=env)
    assert p.returncode == 0 and "rolled back: generation 3" in p.stdout, p.stdout + p.stderr
    assert serves(gw, "from-a")
    p = xgatectl("rollback", "2", env=env)
    assert p.returncode == 0 and "generation 4" in p.stdout
    assert serves(gw, "from-b")
    p = xgatectl("rollback", "77", env=env)
    assert p.returncode == 1 and "generation 77" in p.stderr
    assert xgatectl("rollback", "x", env=env).returncode == 2
    assert xgatectl("apply", env=env).returncode == 2
    assert xgatectl("apply", tmp_path / "missing.json", env=env).returncode == 1
    p = xgatectl("generations", env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].split() == ["GENERATION", "ACTIVATED", "SOURCE", "SHA256"]
    assert [line.split()[2] for line in lines[1:]] == ["file", "api", "rollback", "rollback"]
    p = xgatectl("--json", "generations", env=env)
    assert [g["generation"] for g in json.loads(p.stdout)["generations"]] == [1, 2, 3, 4]
    # The runtime file goes with the gateway.
    gw.stop()
    assert not os.path.exists(runtime)
