"""Composition: parallel calls, chained calls, shaping, deep merge, partial vs fail,
required calls, the _errors body, timeouts, non-JSON answers, auth on the composed route,
and config errors with their JSON paths."""
import json
import time
import urllib.request

from conftest import base_config, http_request, run_check, scaled

API_KEY = "k-compose-0123456789"


def json_up(upstream, name, doc, delay_s=0.0, status=200, ctype="application/json"):
    def handler(req):
        if delay_s:
            time.sleep(delay_s)
        body = doc(req) if callable(doc) else doc
        return status, {"Content-Type": ctype}, json.dumps(body).encode()
    return upstream(name=name, handler=handler)


def compose_cfg(ups, compose, **route):
    r = {"name": "agg", "paths": ["/agg"], "compose": compose}
    r.update(route)
    return base_config(upstreams=ups, routes=[r], access_log=None)


def test_parallel_calls_take_the_slowest_not_the_sum(upstream, gateway):
    a = json_up(upstream, "a", {"a": 1}, delay_s=0.3)
    b = json_up(upstream, "b", {"b": 2}, delay_s=0.3)
    gw = gateway(compose_cfg([a, b], {"calls": [
        {"name": "a", "upstream": "a", "path": "/a"},
        {"name": "b", "upstream": "b", "path": "/b"}]}))
    http_request("GET", gw.url("/agg"))  # warm the pools
    t0 = time.monotonic()
    r = http_request("GET", gw.url("/agg"))
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json() == {"a": 1, "b": 2}
    assert r.headers["x-xgate-completed"] == "true"
    assert r.headers["content-type"] == "application/json"
    assert "age" not in r.headers
    assert took < scaled(0.55), took


def test_chained_call_templates_and_forwarded_headers(upstream, gateway):
    users = json_up(upstream, "users", {"id": 7, "portfolio": {"id": "p/1 x"}})
    inv = json_up(upstream, "inv", lambda req: {"seen": req.path})
    gw = gateway(compose_cfg([users, inv], {"calls": [
        {"name": "inv", "upstream": "inv",
         "path": "/p/{calls.user.portfolio.id}?q={query.q}&h={header.X-Tag}&s={path.1}",
         "group": "inv"},
        {"name": "user", "upstream": "users", "path": "/u"}]}))
    r = http_request("GET", gw.url("/agg?q=a%20b"), headers={"X-Tag": "t&1",
                                                             "X-Request-Id": "rid-42"})
    assert r.status == 200, r
    assert r.json()["inv"] == {"seen": "/p/p%2F1%20x"}
    req = inv.requests[-1]
    assert req.query == "q=a%20b&h=t%261&s=agg"
    assert req.headers["x-request-id"] == "rid-42"
    assert req.headers["x-forwarded-for"] == "127.0.0.1"
    assert req.headers["x-forwarded-proto"] == "http"
    assert users.requests[-1].time <= req.time


def test_shaping_and_deep_merge(upstream, gateway):
    tx = json_up(upstream, "tx", {"data": {"items": {"list": [1, 2], "secret": 1, "n": 5}}})
    acc = json_up(upstream, "acc", {"list": [3], "internal": "x", "total": 9,
                                    "o": {"k": 1}})
    acc2 = json_up(upstream, "acc2", {"o": {"j": 2}})
    gw = gateway(compose_cfg([tx, acc, acc2], {"merge": "deep", "calls": [
        {"name": "tx", "upstream": "tx", "path": "/tx", "target": "data.items",
         "allow": ["list", "n"], "mapping": {"n": "count"}},
        {"name": "acc", "upstream": "acc", "path": "/acc", "deny": ["internal"],
         "mapping": {"total": "portfolio_total"}},
        {"name": "acc2", "upstream": "acc2", "path": "/acc2"}]}))
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200, r
    assert r.json() == {"list": [1, 2, 3], "count": 5, "portfolio_total": 9,
                        "o": {"k": 1, "j": 2}}


def test_shallow_merge_later_call_wins(upstream, gateway):
    a = json_up(upstream, "a", {"o": {"k": 1}, "x": 1})
    b = json_up(upstream, "b", {"o": {"j": 2}})
    gw = gateway(compose_cfg([a, b], {"calls": [
        {"name": "a", "upstream": "a", "path": "/a"},
        {"name": "b", "upstream": "b", "path": "/b"}]}))
    assert http_request("GET", gw.url("/agg")).json() == {"o": {"j": 2}, "x": 1}


def test_partial_fail_required_errors_timeout_non_json(upstream, gateway):
    ok = json_up(upstream, "ok", {"ok": True})
    bad = json_up(upstream, "bad", {"e": 1}, status=500)
    text = json_up(upstream, "text", "hi", ctype="text/plain")
    slow = json_up(upstream, "slow", {"slow": 1}, delay_s=1.0)
    calls = [{"name": "ok", "upstream": "ok", "path": "/ok"},
             {"name": "bad", "upstream": "bad", "path": "/bad"},
             {"name": "text", "upstream": "text", "path": "/text"},
             {"name": "slow", "upstream": "slow", "path": "/slow"},
             {"name": "after", "upstream": "ok", "path": "/x/{calls.bad.id}"}]
    routes = [
        {"name": "partial", "paths": ["/partial"], "compose": {
            "timeout_ms": 300, "errors": True, "calls": calls}},
        {"name": "fail", "paths": ["/fail"], "compose": {
            "timeout_ms": 300, "on_partial": "fail", "calls": calls}},
        {"name": "req", "paths": ["/req"], "compose": {"calls": [
            {"name": "ok", "upstream": "ok", "path": "/ok"},
            {"name": "bad", "upstream": "bad", "path": "/bad", "required": True}]}},
    ]
    gw = gateway(base_config(upstreams=[ok, bad, text, slow], routes=routes, access_log=None))
    t0 = time.monotonic()
    r = http_request("GET", gw.url("/partial"))
    assert time.monotonic() - t0 < scaled(0.9)
    assert r.status == 200, r
    assert r.headers["x-xgate-completed"] == "false"
    body = r.json()
    assert body["ok"] is True
    errs = body["_errors"]
    assert set(errs) == {"bad", "text", "slow", "after"}
    assert errs["bad"]["status"] == 500
    assert errs["text"]["reason"] == "not JSON"
    assert errs["slow"]["reason"] == "timeout"
    assert errs["after"]["reason"] == "dependency failed"
    text = urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5).read().decode()
    for call, outcome in (("ok", "ok"), ("bad", "failed"), ("text", "failed"),
                          ("slow", "timeout"), ("after", "skipped")):
        line = ('xgate_compose_calls_total{route="partial",call="%s",outcome="%s"} 1'
                % (call, outcome))
        assert line in text, (line, [x for x in text.splitlines() if "compose" in x])
    r = http_request("GET", gw.url("/fail"))
    assert r.status == 502 and r.headers["x-xgate-completed"] == "false"
    assert r.json()["error"] == "composition failed"
    r = http_request("GET", gw.url("/req"))
    assert r.status == 502 and r.headers["x-xgate-completed"] == "false"


def test_api_key_auth_still_enforced(upstream, gateway):
    a = json_up(upstream, "a", lambda req: {"user": req.headers.get("x-consumer", "")})
    cfg = compose_cfg([a], {"calls": [{"name": "a", "upstream": "a", "path": "/a/{consumer}"}]},
                      auth={"api_key": {}})
    cfg["auth"] = {"api_keys": {"header": "X-API-Key"}}
    cfg["consumers"] = [{"name": "mobile-app", "api_keys": [API_KEY]}]
    gw = gateway(cfg)
    assert http_request("GET", gw.url("/agg")).status == 401
    assert not a.requests
    r = http_request("GET", gw.url("/agg"), headers={"X-API-Key": API_KEY})
    assert r.status == 200, r
    assert a.requests[-1].path == "/a/mobile-app"


def test_config_errors_name_the_json_path(upstream, tmp_path):
    a = upstream(name="a")

    def check(compose, expect):
        code, out = run_check(compose_cfg([a], compose), tmp_path)
        assert code != 0 and expect in out, out

    check({"calls": [{"name": "x", "upstream": "nope", "path": "/"}]},
          "routes[0].compose.calls[0].upstream: unknown upstream")
    check({"calls": [{"name": "x", "upstream": "a", "path": "/{calls.y.id}"}]},
          "routes[0].compose.calls[0].path")
    check({"calls": [{"name": "x", "upstream": "a", "path": "/{calls.y.id}"},
                     {"name": "y", "upstream": "a", "path": "/{calls.x.id}"}]}, "cycle")
    check({"merge": "wide", "calls": [{"name": "x", "upstream": "a", "path": "/"}]},
          "routes[0].compose.merge")
    check({"on_partial": "maybe", "calls": [{"name": "x", "upstream": "a", "path": "/"}]},
          "routes[0].compose.on_partial")
    check({"calls": [{"name": "x", "upstream": "a", "path": "/", "bogus": 1}]},
          "routes[0].compose.calls[0]")
    check({"calls": [{"name": "x", "upstream": "a", "path": "/{jwt.}"}]},
          "routes[0].compose.calls[0].path: unknown template")
    check({"calls": []}, "routes[0].compose.calls")
    code, out = run_check(compose_cfg([a], {"calls": [
        {"name": "x", "upstream": "a", "path": "/"}]}, upstream="a"), tmp_path)
    assert code != 0 and "routes[0].compose" in out, out


def test_request_body_is_not_read_as_the_next_request(upstream, gateway, http_raw):
    a = json_up(upstream, "a", {"a": 1}, delay_s=0.05)
    gw = gateway(compose_cfg([a], {"calls": [{"name": "a", "upstream": "a", "path": "/a"}]}))
    smuggled = b"GET /agg HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = http_raw(gw.port(), b"POST /agg HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % (len(smuggled) + 1000) + smuggled)
    assert raw.count(b"HTTP/1.1 200") == 1, raw
    assert b"Connection: close" in raw, raw
    assert len(a.requests) == 1


def test_compression_and_cache_apply_to_the_composed_body(upstream, gateway):
    import gzip
    a = json_up(upstream, "a", {"a": "x" * 2000})
    gw = gateway(compose_cfg([a], {"calls": [{"name": "a", "upstream": "a", "path": "/a"}]},
                             cache={"ttl_s": 60},
                             compression={"algorithms": ["gzip"], "types": ["application/json"],
                                          "min_bytes": 100}))
    r = http_request("GET", gw.url("/agg"), headers={"Accept-Encoding": "gzip"})
    assert r.status == 200, r
    assert r.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(r.body)) == {"a": "x" * 2000}
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200 and r.json() == {"a": "x" * 2000}
    assert "age" in r.headers  # the second answer came from the response cache
    assert len(a.requests) == 1


def test_access_log_lists_each_call(upstream, gateway):
    a = json_up(upstream, "a", {"a": 1}, delay_s=0.05)
    bad = json_up(upstream, "bad", {"e": 1}, status=503)
    cfg = compose_cfg([a, bad], {"calls": [{"name": "one", "upstream": "a", "path": "/a"},
                                           {"name": "two", "upstream": "bad", "path": "/b"}]})
    cfg["access_log"] = {"path": "-", "format": "json"}
    gw = gateway(cfg)
    assert http_request("GET", gw.url("/agg")).status == 200
    gw.wait_log(r'"calls":\[')
    entry = [e for e in gw.access_log() if e.get("route") == "agg"][-1]
    one, two = entry["calls"]
    assert one["name"] == "one" and one["upstream"] == "a" and one["status"] == 200
    assert one["us"] >= 50000
    assert two["name"] == "two" and two["upstream"] == "bad" and two["status"] == 503


def test_max_compose_bytes_bounds_calls_and_the_composed_body(upstream, gateway, tmp_path):
    big = json_up(upstream, "big", {"blob": "x" * 3000})
    small = json_up(upstream, "small", {"s": 1})
    half_a = json_up(upstream, "ha", {"a": "y" * 1200})
    half_b = json_up(upstream, "hb", {"b": "z" * 1200})
    cfg = compose_cfg([big, small], {"errors": True, "calls": [
        {"name": "big", "upstream": "big", "path": "/big"},
        {"name": "small", "upstream": "small", "path": "/small"}]})
    cfg["limits"] = {"max_compose_bytes": 2048}
    gw = gateway(cfg)
    r = http_request("GET", gw.url("/agg"))
    assert r.status == 200, r
    assert r.headers["x-xgate-completed"] == "false"
    doc = r.json()
    assert doc["s"] == 1 and "blob" not in doc
    assert doc["_errors"]["big"]["reason"] == "response too large", doc
    # Each call fits, their merge does not.
    cfg = compose_cfg([half_a, half_b], {"calls": [
        {"name": "a", "upstream": "ha", "path": "/a"},
        {"name": "b", "upstream": "hb", "path": "/b"}]})
    cfg["limits"] = {"max_compose_bytes": 2048}
    gw2 = gateway(cfg)
    r = http_request("GET", gw2.url("/agg"))
    assert r.status == 502, r
    assert r.json()["error"] == "composed response too large"
    cfg["limits"] = {"max_compose_bytes": 100}
    code, out = run_check(cfg, tmp_path)
    assert code != 0 and "limits.max_compose_bytes" in out, out


def test_jwt_claim_templates(upstream, gateway, tmp_path):
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    acc = json_up(upstream, "acc", lambda req: {"seen": req.path + "?" + req.query})
    cfg = base_config(upstreams=[acc], access_log=None, routes=[
        {"name": "agg", "paths": ["/agg"], "auth": {"jwt": {}}, "compose": {
            "errors": True, "calls": [
                {"name": "acc", "upstream": "acc",
                 "path": "/accounts/{jwt.sub}?tenant={jwt.tenant}&n={jwt.level}"},
                {"name": "missing", "upstream": "acc", "path": "/x/{jwt.nope}"}]}}],
        auth={"jwt": {"jwks_file": str(jwks), "algorithms": ["ES256"],
                      "issuer": "https://idp.test"}})
    gw = gateway(cfg)
    now = int(time.time())
    tok = pyjwt.encode({"sub": "ann/7", "tenant": "a b", "level": 3, "iss": "https://idp.test",
                        "iat": now, "exp": now + 600}, key, algorithm="ES256",
                       headers={"kid": "k1"})
    r = http_request("GET", gw.url("/agg"), headers={"Authorization": "Bearer " + tok})
    assert r.status == 200, r
    doc = r.json()
    assert doc["seen"] == "/accounts/ann%2F7?tenant=a%20b&n=3", doc
    assert doc["_errors"]["missing"]["reason"] == "template value missing", doc
    assert http_request("GET", gw.url("/agg")).status == 401
