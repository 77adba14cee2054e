"""WAF: ModSecurity with the OWASP CRS (config/waf/crs.conf, paranoia level 1) in front of
a route. Attacks in the query, headers and body get 403 "blocked" with the rule ids in the
access log and never reach the upstream; benign traffic passes; detect mode passes and
logs; a route with "waf": false is not inspected; bad rules files are config errors that
a reload refuses while the old config keeps serving."""
import json
import os
import re
import time
import urllib.request

import pytest

from conftest import REPO, base_config, http_request, run_check

CRS = os.path.join(str(REPO), "config", "waf", "crs.conf")
# What a browser-ish client sends: CRS scores a request without Accept or User-Agent.
HDRS = {"Accept": "*/*", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) xgate-test"}

ATTACKS = [
    # (name, method, path, extra headers, body)
    ("sqli_query", "GET", "/api/items?id=1%27%20OR%20%271%27%3D%271", {}, None),
    ("sqli_union", "GET", "/api/items?q=1%20UNION%20SELECT%20username,password%20FROM%20users--",
     {}, None),
    ("xss_query", "GET", "/api/items?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", {}, None),
    ("traversal_query", "GET", "/api/items?file=../../../../etc/passwd", {}, None),
    ("xss_header", "GET", "/api/items", {"Referer": "<script>alert(1)</script>"}, None),
    ("sqli_cookie", "GET", "/api/items", {"Cookie": "session=1' OR '1'='1' --"}, None),
    ("shellshock_header", "GET", "/api/items", {"User-Agent": "() { :; }; /bin/bash -c 'id'"},
     None),
    ("sqli_form_body", "POST", "/api/items",
     {"Content-Type": "application/x-www-form-urlencoded"},
     b"user=admin&pass=x%27%20OR%201%3D1%20--%20"),
    ("xss_json_body", "POST", "/api/items", {"Content-Type": "application/json"},
     json.dumps({"comment": "<script>alert(document.cookie)</script>"}).encode()),
    ("rce_json_body", "POST", "/api/items", {"Content-Type": "application/json"},
     json.dumps({"cmd": "; cat /etc/passwd"}).encode()),
]

BENIGN = [
    ("plain_get", "GET", "/api/items", {}, None),
    ("get_query", "GET", "/api/items?page=2&sort=-created_at&fields=id,name", {}, None),
    ("punctuation_query", "GET",
     "/api/items?q=hello%2C%20world%21&tag=c%2B%2B&email=a.b%40example.com&range=1-10", {}, None),
    ("search_words", "GET", "/api/items?q=select%20a%20good%20union%20rep", {}, None),
    ("deep_path", "GET", "/api/items/42/versions/7", {}, None),
    ("json_post", "POST", "/api/items", {"Content-Type": "application/json"},
     json.dumps({"name": "Widget", "price": 9.99, "tags": ["a", "b"],
                 "note": "It's 50% off; ask Bob & Alice."}).encode()),
    ("form_post", "POST", "/api/items", {"Content-Type": "application/x-www-form-urlencoded"},
     b"name=Widget&qty=3&comment=looks+good%21"),
    ("json_put", "PUT", "/api/items/42", {"Content-Type": "application/json"},
     json.dumps({"id": 42, "enabled": True, "meta": {"k": "v"}}).encode()),
    ("delete", "DELETE", "/api/items/42", {}, None),
    ("json_patch", "PATCH", "/api/items/42", {"Content-Type": "application/json"},
     json.dumps({"op": "replace", "path": "/name", "value": "New name"}).encode()),
    ("auth_header", "GET", "/api/items", {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"},
     None),
]


def waf_cfg(up, mode=None, rules=None, **route):
    waf = {"rules": rules or [CRS]}
    if mode:
        waf["mode"] = mode
    r = {"name": "api", "paths": ["/api"], "upstream": up.name}
    r.update(route)
    return base_config(upstreams=[up], routes=[r, {"name": "open", "paths": ["/open"],
                                                   "upstream": up.name, "waf": False}],
                       waf=waf)


def send(gw, method, path, headers, body):
    h = dict(HDRS)
    h.update(headers)
    return http_request(method, gw.url(path), body=body, headers=h)


def entry_for(gw, request_id, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in gw.access_log() if e.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            return found[-1] if found else None
        time.sleep(0.05)


def metric(gw, name, **labels):
    with urllib.request.urlopen(gw.admin_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r'^%s\{(.*)\} (\S+)$' % re.escape(name), line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return None


@pytest.fixture
def blocking(upstream, gateway):
    up = upstream(name="app")
    return up, gateway(waf_cfg(up))


def test_crs_battery_blocked_with_rule_ids(blocking):
    up, gw = blocking
    for name, method, path, headers, body in ATTACKS:
        rid = "waf-" + name
        before = len(up.requests)
        r = send(gw, method, path, dict(headers, **{"X-Request-Id": rid}), body)
        assert r.status == 403, (name, r.status, r.body)
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "blocked", "status": 403, "request_id": rid}, name
        assert len(up.requests) == before, name  # never reached the upstream
        e = entry_for(gw, rid)
        assert e and e["status"] == 403, (name, e)
        ids = e.get("waf_rules")
        assert ids and all(isinstance(i, int) for i in ids), (name, e)
        # CRS scores the attack (9xxxxx detection rules) and 949110 blocks on the score
        assert 949110 in ids and any(i != 949110 for i in ids), (name, ids)
    assert metric(gw, "xgate_waf_blocked_total", route="api", mode="block") == len(ATTACKS)
    assert metric(gw, "xgate_waf_blocked_total", route="api", mode="detect") == 0


def test_specific_rule_families(blocking):
    _, gw = blocking
    cases = {"sqli_query": 942, "xss_query": 941, "traversal_query": 930}
    for name, family in cases.items():
        _, method, path, headers, body = next(a for a in ATTACKS if a[0] == name)
        rid = "fam-" + name
        assert send(gw, method, path, {"X-Request-Id": rid}, body).status == 403
        ids = entry_for(gw, rid)["waf_rules"]
        assert any(i // 1000 == family for i in ids), (name, ids)


def test_benign_requests_pass(blocking):
    up, gw = blocking
    false_positives = []
    for name, method, path, headers, body in BENIGN:
        rid = "ok-" + name
        r = send(gw, method, path, dict(headers, **{"X-Request-Id": rid}), body)
        if r.status != 200:
            false_positives.append((name, r.status, (entry_for(gw, rid) or {}).get("waf_rules")))
            continue
        e = entry_for(gw, rid)
        assert "waf_rules" not in e, (name, e)
        if body:
            assert up.requests[-1].body == body, name  # the buffered body went on intact
    assert not false_positives, false_positives
    assert metric(gw, "xgate_waf_blocked_total", route="api", mode="block") == 0


def test_large_body_inspected_only_in_its_first_part(upstream, gateway):
    up = upstream(name="app")
    cfg = waf_cfg(up)
    cfg["waf"]["inspect_body_bytes"] = 1024
    gw = gateway(cfg)
    attack = b"&q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"
    hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    early = attack[1:] + b"&pad=" + b"a" * 4000
    late = b"pad=" + b"a" * 4000 + attack
    assert send(gw, "POST", "/api/x", hdr, early).status == 403
    r = send(gw, "POST", "/api/x", hdr, late)
    assert r.status == 200, r.body
    assert up.requests[-1].body == late


def test_detect_mode_passes_and_logs(upstream, gateway):
    up = upstream(name="app")
    gw = gateway(waf_cfg(up, mode="detect"))
    _, method, path, headers, body = ATTACKS[0]
    r = send(gw, method, path, {"X-Request-Id": "det-1"}, body)
    assert r.status == 200, r.body
    assert up.requests[-1].query == path.split("?", 1)[1]
    e = entry_for(gw, "det-1")
    assert e["status"] == 200 and 949110 in e["waf_rules"], e
    r = send(gw, "GET", "/api/fine?x=1", {"X-Request-Id": "det-2"}, None)
    assert r.status == 200 and "waf_rules" not in entry_for(gw, "det-2")
    assert metric(gw, "xgate_waf_blocked_total", route="api", mode="detect") == 1
    assert metric(gw, "xgate_waf_blocked_total", route="api", mode="block") == 0
    assert "ModSecurity" not in gw.log()  # rule messages never reach stderr


def test_route_waf_false_skips(blocking):
    up, gw = blocking
    _, method, path, headers, body = ATTACKS[0]
    r = send(gw, method, path.replace("/api/items", "/open"), {"X-Request-Id": "skip-1"}, body)
    assert r.status == 200
    e = entry_for(gw, "skip-1")
    assert e["route"] == "open" and "waf_rules" not in e
    assert send(gw, method, path, {}, body).status == 403


def test_config_errors_name_the_path(upstream, tmp_path):
    up = upstream(name="app")
    bad = tmp_path / "bad.conf"
    bad.write_text('SecRule ARGS "@rx x" "id:1,phase:2,deny,no_such_action"\n')
    code, out = run_check(waf_cfg(up, rules=[CRS, str(bad)]), str(tmp_path))
    assert code != 0 and re.search(r"^waf\.rules\[1\]: .*no_such_action", out, re.M), out
    code, out = run_check(waf_cfg(up, rules=[str(tmp_path / "missing.conf")]), str(tmp_path))
    assert code != 0 and re.search(r"^waf\.rules\[0\]: .*missing\.conf", out, re.M), out
    cases = [
        ({"rules": []}, r"^waf\.rules: at least one rules file"),
        ({"rules": [CRS], "mode": "log"}, r"^waf\.mode: "),
        ({"rules": [CRS], "inspect_body_bytes": -1}, r"^waf\.inspect_body_bytes: "),
        ({"rules": [CRS], "paranoia": 2}, r"^waf\.paranoia: unknown key"),
        ("on", r"^waf: must be an object"),
    ]
    for waf, pattern in cases:
        cfg = waf_cfg(up)
        cfg["waf"] = waf
        code, out = run_check(cfg, str(tmp_path))
        assert code != 0 and re.search(pattern, out, re.M), (waf, out)
    cfg = waf_cfg(up)
    del cfg["waf"]
    cfg["routes"][0]["waf"] = True
    code, out = run_check(cfg, str(tmp_path))
    assert code != 0 and re.search(r'^routes\[0\]\.waf: needs a top-level "waf"', out, re.M), out
    cfg = waf_cfg(up, rules=[str(tmp_path / "missing.conf")])
    cfg["routes"][0]["waf"] = True  # the failed top-level waf is the only error
    code, out = run_check(cfg, str(tmp_path))
    assert code != 0 and "routes[0]" not in out and "waf.rules[0]" in out, out
    cfg = waf_cfg(up)
    cfg["routes"][0]["waf"] = "no"
    code, out = run_check(cfg, str(tmp_path))
    assert code != 0 and re.search(r"^routes\[0\]\.waf: must be", out, re.M), out


def test_reload_with_bad_rules_keeps_old_config(blocking, tmp_path):
    up, gw = blocking
    _, method, path, headers, body = ATTACKS[0]
    bad = tmp_path / "bad.conf"
    bad.write_text("SecRule ARGS\n")
    cfg = json.loads(json.dumps(gw.config))
    cfg["waf"]["rules"] = [str(bad)]
    cfg["waf"]["mode"] = "detect"
    gw.reload(cfg)
    gw.wait_log(r"waf\.rules\[0\]")
    assert send(gw, method, path, {}, body).status == 403  # still the old, blocking config
    # A good reload (detect mode) takes over.
    cfg["waf"]["rules"] = [CRS]
    gw.reload(cfg)
    deadline = time.monotonic() + 10
    while send(gw, method, path, {}, body).status != 200:
        assert time.monotonic() < deadline, "detect mode never took over"
        time.sleep(0.1)
