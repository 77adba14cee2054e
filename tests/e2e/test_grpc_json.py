"""grpc_json: REST/JSON clients against a real grpcio server through an h2c upstream —
round trips of every field kind, google.api.http bindings (path variables, query
parameters, body field, response_body, :verb, **), server streaming as a JSON array,
gRPC status -> HTTP status, JSON that does not fit the message (400), unknown methods
(404), and config errors naming their JSON path."""
import json
import subprocess
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import base_config, http_request, run_check

PROTO_DIR = Path(__file__).resolve().parents[1] / "grpc"


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("grpcjson") / "kinds.pb"
    subprocess.run(["protoc", "-I%s" % PROTO_DIR, "-I/usr/include", "--include_imports",
                    "--descriptor_set_out=%s" % out, str(PROTO_DIR / "kinds.proto")],
                   check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def messages(descriptor_set):
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(pool.FindMessageTypeByName("test.v1." + n))
            for n in ("Kinds", "GetUserRequest", "User", "UpdateUserRequest", "BookRequest",
                      "ListRequest")}


@pytest.fixture(scope="module")
def kitchen(messages):
    m = messages
    seen = []

    def get_user(req, ctx):
        seen.append(req)
        codes = {"missing": (grpc.StatusCode.NOT_FOUND, "no such user"),
                 "denied": (grpc.StatusCode.PERMISSION_DENIED, "not yours"),
                 "anon": (grpc.StatusCode.UNAUTHENTICATED, "who are you"),
                 "busy": (grpc.StatusCode.UNAVAILABLE, "try later"),
                 "bad": (grpc.StatusCode.INVALID_ARGUMENT, "bad id")}
        if req.id in codes:
            ctx.abort(*codes[req.id])
        return m["User"](id=req.id, display_name="n-%s-%s-%s" % (
            req.verbose, req.filter.label, ",".join(req.tags)), age=2 ** 40)

    def update_user(req, ctx):
        return m["User"](id=req.id, display_name=req.user.display_name + "!")

    def book(req, ctx):
        return m["BookRequest"](name=req.name, path=req.path)

    def list_users(req, ctx):
        for i in range(req.count):
            yield m["User"](id=str(i))

    def uu(fn, req, resp):
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=m[req].FromString,
            response_serializer=m[resp].SerializeToString)

    handlers = {
        "Echo": uu(lambda r, c: r, "Kinds", "Kinds"),
        "GetUser": uu(get_user, "GetUserRequest", "User"),
        "CreateUser": uu(lambda r, c: r, "User", "User"),
        "UpdateUser": uu(update_user, "UpdateUserRequest", "User"),
        "GetBook": uu(book, "BookRequest", "BookRequest"),
        "GetFile": uu(book, "BookRequest", "BookRequest"),
        "Cancel": uu(book, "BookRequest", "BookRequest"),
        "List": grpc.unary_stream_rpc_method_handler(
            list_users, request_deserializer=m["ListRequest"].FromString,
            response_serializer=m["User"].SerializeToString),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.v1.Kitchen", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, seen
    server.stop(0)


def gw_config(descriptor_set, port, protocol="h2c"):
    g = {"descriptor_set": str(descriptor_set), "services": ["test.v1.Kitchen"]}
    up = {"name": "kitchen", "targets": [{"address": "127.0.0.1:%d" % port}]}
    if protocol:
        up["protocol"] = protocol
    return base_config(
        upstreams=[up],
        routes=[{"name": "kitchen", "paths": ["/"], "upstream": "kitchen", "grpc_json": g}],
        access_log=None)


@pytest.fixture
def gw(descriptor_set, kitchen, gateway, tmp_path):
    cfg = gw_config(descriptor_set, kitchen[0])
    code, out = run_check(cfg, tmp_path)
    assert code == 0, out
    return gateway(cfg)


@pytest.fixture
def gw_local(descriptor_set, gateway):
    """For answers the gateway gives before any gRPC call (400, 404, 405): the upstream is
    never reached, so it needs no h2c."""
    return gateway(gw_config(descriptor_set, 9, protocol=None))


def post(gw, path, doc=None, raw=None):
    body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
    return http_request("POST", gw.url(path), body=body,
                        headers={"Content-Type": "application/json"})


def test_every_field_kind_round_trips(gw):
    doc = {"fDouble": 1.5, "fFloat": 0.25, "fInt64": "-9007199254740993",
           "fUint64": "18446744073709551615", "fInt32": -7, "fFixed64": "5",
           "fFixed32": 4294967295, "fBool": True, "fString": "h\u00e9", "fBytes": "AAEC/w==",
           "fUint32": 3, "fEnum": "GREEN", "fSfixed32": -2, "fSfixed64": "-3",
           "fSint32": -100, "fSint64": "-200", "inner": {"label": "x", "n": 2},
           "rInt32": [1, -2, 3], "rString": ["a", "b"], "rInner": [{"n": 1}, {}],
           "mStr": {"k": 5}, "mInt": {"-4": {"label": "m"}}, "oText": "t",
           "ts": "1972-01-01T10:00:20.021Z", "dur": "1.500s", "wInt32": 0, "wString": "s",
           "wBool": False, "wBytes": "AQ==", "wInt64": "9", "wDouble": 2.5,
           "st": {"a": [1, "x", None, True, {"b": {}}]}, "mask": "fooBar,baz.quxQuux",
           "rEnum": ["RED", "GREEN"], "optInt32": 0, "rDouble": [0.5, -1.25]}
    r = post(gw, "/test.v1.Kitchen/Echo", doc)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json"
    assert r.json() == doc
    # original field names are accepted, defaults are omitted on the way back
    r = post(gw, "/test.v1.Kitchen/Echo", {"f_int32": "12", "f_string": "", "f_enum": 1,
                                            "f_double": "NaN"})
    assert r.status == 200, r
    assert r.json() == {"fInt32": 12, "fEnum": "RED", "fDouble": "NaN"}


def test_annotations(gw, kitchen):
    r = http_request("GET", gw.url("/v1/users/u.1?verbose=true&filter.label=a+b&tags=x&tags=y"))
    assert r.status == 200, r
    assert r.json() == {"id": "u.1", "displayName": "n-True-a b-x,y", "age": "1099511627776"}
    assert kitchen[1][-1].id == "u.1"
    r = http_request("GET", gw.url("/v1/people/p7"))
    assert r.status == 200 and r.json()["id"] == "p7", r
    r = post(gw, "/v1/users", {"id": "n", "displayName": "N", "age": "3"})
    assert r.status == 200 and r.json() == {"id": "n", "displayName": "N", "age": "3"}, r
    r = http_request("PATCH", gw.url("/v1/users/9"), body=b'{"display_name": "D"}')
    assert r.status == 200 and r.json() == "D!", r  # response_body: display_name
    r = http_request("GET", gw.url("/v1/shelves/s1/books/b2"))
    assert r.status == 200 and r.json() == {"name": "shelves/s1/books/b2"}, r
    r = http_request("GET", gw.url("/v1/files/a/b/c.txt"))
    assert r.status == 200 and r.json() == {"path": "a/b/c.txt"}, r
    r = post(gw, "/v1/ops/42:cancel")
    assert r.status == 200 and r.json() == {"name": "ops/42"}, r


def test_server_streaming_is_a_json_array(gw):
    r = http_request("GET", gw.url("/v1/list?count=3"))
    assert r.status == 200, r
    assert r.json() == [{"id": "0"}, {"id": "1"}, {"id": "2"}]
    r = http_request("GET", gw.url("/v1/list"))
    assert r.status == 200 and r.json() == [], r


@pytest.mark.parametrize("uid,status,message", [
    ("missing", 404, "no such user"), ("denied", 403, "not yours"),
    ("anon", 401, "who are you"), ("busy", 503, "try later"), ("bad", 400, "bad id")])
def test_grpc_status_maps_to_http(gw, uid, status, message):
    r = http_request("GET", gw.url("/v1/users/" + uid))
    assert r.status == status, r
    assert r.json()["error"] == message


def test_json_that_does_not_fit_is_400(gw_local):
    gw = gw_local
    for doc, field in [({"nope": 1}, "nope"), ({"fInt32": "x"}, "fInt32"),
                       ({"inner": {"n": []}}, "inner.n"), ({"rInt32": [1, "z"]}, "rInt32[1]"),
                       ({"ts": "yesterday"}, "ts"), ({"oText": "a", "oNum": 1}, "oNum")]:
        r = post(gw, "/test.v1.Kitchen/Echo", doc)
        assert r.status == 400, (doc, r)
        assert field in r.json()["error"], (doc, r.json())
    r = post(gw, "/test.v1.Kitchen/Echo", raw=b"{not json")
    assert r.status == 400, r
    r = http_request("GET", gw.url("/v1/users/1?verbose=maybe"))
    assert r.status == 400 and "verbose" in r.json()["error"], r


def test_unknown_method_is_404(gw_local):
    gw = gw_local
    assert post(gw, "/test.v1.Kitchen/Nope", {}).status == 404
    assert http_request("GET", gw.url("/v2/users/1")).status == 404
    assert http_request("DELETE", gw.url("/v1/users/1")).status == 405
    # a gRPC client on a transcoding route is refused, not forwarded as HTTP/1.1
    r = http_request("POST", gw.url("/test.v1.Kitchen/Echo"), body=b"\0\0\0\0\0",
                     headers={"Content-Type": "application/grpc"})
    assert r.status == 415, r


def test_config_errors_name_the_json_path(descriptor_set, tmp_path):
    def check(grpc_json, expect):
        cfg = base_config(upstreams=[{"name": "k", "targets": [{"address": "127.0.0.1:9"}]}],
                          routes=[{"paths": ["/"], "upstream": "k", "grpc_json": grpc_json}])
        code, out = run_check(cfg, tmp_path)
        assert code != 0 and expect in out, out

    check({"descriptor_set": str(tmp_path / "missing.pb"), "services": ["test.v1.Kitchen"]},
          "routes[0].grpc_json.descriptor_set: cannot open")
    bogus = tmp_path / "bogus.pb"
    bogus.write_bytes(b"\x0a\x05zz")
    check({"descriptor_set": str(bogus), "services": ["test.v1.Kitchen"]},
          "routes[0].grpc_json.descriptor_set: not a FileDescriptorSet")
    check({"descriptor_set": str(descriptor_set), "services": ["test.v1.Nope"]},
          "routes[0].grpc_json.services: service \"test.v1.Nope\" is not in the descriptor set")
    check({"descriptor_set": str(descriptor_set)}, "routes[0].grpc_json.services")
    check({"services": ["test.v1.Kitchen"]}, "routes[0].grpc_json.descriptor_set: required")
    check({"descriptor_set": str(descriptor_set), "services": ["test.v1.Kitchen"], "x": 1},
          "routes[0].grpc_json")
    cfg = base_config(upstreams=[{"name": "k", "targets": [{"address": "127.0.0.1:9"}]}],
                      routes=[{"paths": ["/"], "upstream": "k", "grpc_json": {
                          "descriptor_set": str(descriptor_set),
                          "services": ["test.v1.Kitchen"]}}])
    code, out = run_check(cfg, tmp_path)
    assert code == 0, out
