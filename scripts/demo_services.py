#!/usr/bin/python3
"""Demo upstream services for `make run`: small real HTTP/1.1 JSON services.

  demo_services.py users:9101 users:9102 orders:9201 payments:9301 bank:9401

Each NAME:PORT is one instance on 127.0.0.1 with keep-alive, GET /health, and the JSON
endpoints below. Every response names the instance (`"instance": "users@9101"`) so
load balancing is visible. State is in memory, per instance.

  users     GET /api/users, GET /api/users/ID, POST /api/users {"name": ...}
  orders    GET /api/catalog, GET /api/orders, GET /api/orders/ID, POST /api/orders {"item", "qty"}
  payments  GET /api/payments?user=NAME, GET /api/payments/ID,
            POST /api/payments {"order_id", "amount_cents"}
  bank      GET /api/accounts/OWNER, GET /api/transactions?account=ID&limit=N,
            GET /api/investments/ACCOUNT_ID (read-only; the /api/dashboard composition)
"""
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
CATALOG = [
    {"sku": "tea-green", "name": "Green tea", "price_cents": 450},
    {"sku": "tea-black", "name": "Black tea", "price_cents": 400},
    {"sku": "mug", "name": "Mug", "price_cents": 1200},
]


class Store:
    def __init__(self, seed):
        self.lock = threading.Lock()
        self.items = {i + 1: dict(item, id=i + 1) for i, item in enumerate(seed)}
        self.next_id = len(self.items) + 1

    def list(self):
        with self.lock:
            return list(self.items.values())

    def get(self, item_id):
        with self.lock:
            return self.items.get(item_id)

    def add(self, item):
        with self.lock:
            item = dict(item, id=self.next_id)
            self.items[self.next_id] = item
            self.next_id += 1
            return item


ACCOUNTS = {"alice": {"id": 10, "owner": "alice", "iban": "DE00 0000 0000 0000 0010",
                     "balance_cents": 152300, "currency": "EUR"},
            "bob": {"id": 11, "owner": "bob", "iban": "DE00 0000 0000 0000 0011",
                    "balance_cents": 4200, "currency": "EUR"}}
TRANSACTIONS = {10: [{"amount_cents": -450, "text": "Green tea"},
                     {"amount_cents": 250000, "text": "Salary"},
                     {"amount_cents": -1200, "text": "Mug"}],
                11: [{"amount_cents": -400, "text": "Black tea"}]}
INVESTMENTS = {10: {"total_cents": 1830000, "positions": [{"fund": "World ETF", "share": 0.8},
                                                          {"fund": "Bonds", "share": 0.2}]},
               11: {"total_cents": 0, "positions": []}}


def query(path):
    out = {}
    for pair in path.partition("?")[2].split("&"):
        name, _, value = pair.partition("=")
        if name:
            out[name] = value
    return out


def bank(method, parts, args):
    """The read-only banking service behind /api/dashboard (seed 004)."""
    if method not in ("GET", "HEAD"):
        return 405, {"error": "method not allowed"}
    if len(parts) == 3 and parts[:2] == ["api", "accounts"]:
        account = ACCOUNTS.get(parts[2])
        return (200, account) if account else (404, {"error": "no such account"})
    if len(parts) == 2 and parts == ["api", "transactions"]:
        if not args.get("account", "").isdigit():
            return 400, {"error": "account must be a number"}
        limit = int(args["limit"]) if args.get("limit", "").isdigit() else 10
        return 200, {"transactions": TRANSACTIONS.get(int(args["account"]), [])[:limit]}
    if len(parts) == 3 and parts[:2] == ["api", "investments"] and parts[2].isdigit():
        summary = INVESTMENTS.get(int(parts[2]))
        return (200, summary) if summary else (404, {"error": "no such account"})
    return 404, {"error": "not found"}


class Service:
    """Routes for one instance; methods return (status, payload dict)."""

    def __init__(self, name, port):
        self.name = name
        self.instance = "%s@%d" % (name, port)
        seeds = {
            "users": [{"name": "alice"}, {"name": "bob"}],
            "orders": [{"item": "mug", "qty": 1, "user": "alice"}],
            "payments": [{"order_id": 1, "amount_cents": 1200, "user": "alice",
                          "status": "captured"}],
            "bank": [],
        }
        self.store = Store(seeds[name])

    def handle(self, method, path, body, headers):
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["health"]:
            return 200, {"status": "ok"}
        if self.name == "orders" and parts == ["api", "catalog"] and method in ("GET", "HEAD"):
            return 200, {"catalog": CATALOG, "generated_at": time.time()}
        if self.name == "bank":
            return bank(method, parts, query(path))
        collection = {"users": "users", "orders": "orders", "payments": "payments"}[self.name]
        if parts[:2] != ["api", collection]:
            return 404, {"error": "not found"}
        if len(parts) == 2:
            if method == "GET":
                items = self.store.list()
                user = query(path).get("user")
                if self.name == "payments":
                    items = [i for i in items if i.get("user") == user]
                return 200, {collection: items}
            if method == "POST":
                return self.create(body, headers)
            return 405, {"error": "method not allowed"}
        if len(parts) == 3 and method == "GET":
            if not parts[2].isdigit():
                return 400, {"error": "id must be a number"}
            item = self.store.get(int(parts[2]))
            return (200, item) if item else (404, {"error": "no such %s" % collection[:-1]})
        return 404, {"error": "not found"}

    def create(self, body, headers):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body must be JSON"}
        if not isinstance(data, dict):
            return 400, {"error": "body must be a JSON object"}
        required = {"users": ("name",), "orders": ("item",),
                    "payments": ("order_id", "amount_cents")}[self.name]
        missing = [k for k in required if k not in data]
        if missing:
            return 400, {"error": "missing field(s): " + ", ".join(missing)}
        record = {k: data[k] for k in data if isinstance(k, str)}
        # The gateway forwards the verified JWT subject; show that it arrived.
        if headers.get("X-User-Id"):
            record["created_by"] = headers["X-User-Id"]
        if self.name == "payments":
            record["status"] = "captured"
            record.setdefault("user", headers.get("X-User-Id", ""))
        return 201, self.store.add(record)


def make_handler(service):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "xgate-demo"

        def _serve(self):
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding"):
                self._reply(411, {"error": "send Content-Length"}, close=True)
                return
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                self._reply(413 if length.isdigit() else 400, {"error": "bad body length"},
                            close=True)
                return
            body = self.rfile.read(int(length)) if length else b""
            status, payload = service.handle(self.command, self.path, body, self.headers)
            self._reply(status, payload)

        def _reply(self, status, payload, close=False):
            payload = dict(payload, instance=service.instance,
                           request_id=self.headers.get("X-Request-Id", ""))
            data = (json.dumps(payload, indent=1) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (service.instance, fmt % args))

    return Handler


def main(argv):
    specs = argv or ["users:9101", "users:9102", "orders:9201", "payments:9301", "bank:9401"]
    servers = []
    for spec in specs:
        name, _, port = spec.partition(":")
        if name not in ("users", "orders", "payments", "bank") or not port.isdigit():
            sys.exit("demo_services: bad instance %r (want users|orders|payments|bank:PORT)"
                     % spec)
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), make_handler(Service(name, int(port))))
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print("demo_services: %s listening on 127.0.0.1:%s" % (name, port), file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
