"""docs/grafana/xgate.json only queries what the gateway exports: every metric a query names
is a family rendered by userspace/metrics/render.c, and every one of them that a gateway
without the XDP shield exports is in a real /metrics scrape after traffic, with the labels
the query groups or filters by."""
import json
import re

from conftest import REPO, base_config, http_request

DASHBOARD = REPO / "docs" / "grafana" / "xgate.json"
RENDER = REPO / "userspace" / "metrics" / "render.c"
METRIC_RE = re.compile(r"\bxgate_[a-z0-9_]+")
LABEL_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)|([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
NEEDS_EDGE = {"xgate_xdp_packets_total"}  # rendered only when the XDP stats map is readable
PROMQL_LABELS = {"le", "instance", "job"}  # from the histogram and the scrape, not the family


def queries():
    dash = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    out += [v["query"] for v in dash.get("templating", {}).get("list", []) if "query" in v]
    assert out, "no queries in " + str(DASHBOARD)
    return out


def family(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_queried_metric_is_rendered():
    rendered = set(re.findall(r'family\(b, "(xgate_[a-z0-9_]+)"', RENDER.read_text()))
    assert rendered
    for expr in queries():
        for name in METRIC_RE.findall(expr):
            assert name in rendered or family(name) in rendered, (
                "docs/grafana/xgate.json queries %s, which userspace/metrics/render.c does not "
                "export (query: %s)" % (name, expr))


def test_queried_metrics_and_labels_in_a_scrape(upstream, gateway):
    a = upstream(name="a")
    cfg = base_config(upstreams=[a],
                      routes=[{"name": "r", "paths": ["/r"], "upstream": "a",
                               "rate_limit": {"per_s": 1, "burst": 1}},
                              {"name": "k", "paths": ["/k"], "upstream": "a",
                               "auth": {"api_key": {}}}],
                      auth={"api_keys": {"header": "X-API-Key"}},
                      consumers=[{"name": "c1", "api_keys": ["graf-key-0123456789"]}])
    gw = gateway(cfg)
    for _ in range(3):
        http_request("GET", gw.url("/r"))
    http_request("GET", gw.url("/k"), headers={"X-API-Key": "graf-key-0123456789"})
    http_request("GET", gw.url("/k"))
    text = http_request("GET", gw.admin_url + "/metrics").body.decode()
    labels = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? ", line)
        if m:
            labels.setdefault(m.group(1), set()).update(
                re.findall(r'([a-z_]+)="', m.group(2) or ""))
    for expr in queries():
        names = [n for n in METRIC_RE.findall(expr) if n not in NEEDS_EDGE]
        wanted = set()
        for by, filt in LABEL_RE.findall(expr):
            wanted.update(x.strip() for x in by.split(",") if x.strip())
            if filt:
                wanted.add(filt)
        for name in names:
            assert name in labels, "%s (in %s) is not in a /metrics scrape" % (name, expr)
        if names:
            have = set().union(*(labels[n] for n in names)) | PROMQL_LABELS
            missing = wanted - have
            assert not missing, "query %s uses labels %s that %s do not carry" % (
                expr, missing, names)
