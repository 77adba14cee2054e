#!/usr/bin/python3
"""Fault soak: mixed load through xgate while its upstreams are killed, reset, slowed and
half-opened on a schedule; then checks that nothing leaked.

usage: soak.py [--duration S] [--build DIR] [--workers N]   (see bench/soak.sh)

Load, all at once for the whole run:
  keepalive   wrk, 16 keep-alive connections, GET /
  newconn     one request per connection (Connection: close), GET /
  upload      POST /upload with 1 MiB bodies on a keep-alive connection
  slowread    GET /big (16 MiB) read at ~2 MiB/s, abandoned after 4 s
Faults, one step every --step seconds, cycling over three upstream targets:
  kill        SIGKILL the target's process; restarted at the next step
  reset       the target answers every connection with a TCP reset
  slow        the target waits 3 s before each response (the route's read timeout is 1 s)
  halfopen    SIGSTOP the target: the kernel still accepts, nobody answers; SIGCONT later
  normal
Checks, after the load stopped and the gateway settled: open fds (minus sockets to the
upstreams, which the keep-alive pools may legitimately hold) equal the baseline taken
before any traffic; RSS grew by less than 5 % over the one taken after the warm-up;
xgate_connections_active is back to 0. Exit status 1 when a check fails.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = 16 << 20
UPLOAD = 1 << 20


# ---- the fault-injectable upstream (runs as its own process: `soak.py upstream PORT FILE`) ----

def upstream_main(port, mode_file):
    import socketserver

    state = {"mode": "normal"}

    def watch_mode():
        while True:
            try:
                with open(mode_file) as f:
                    state["mode"] = f.read().strip() or "normal"
            except OSError:
                state["mode"] = "normal"
            time.sleep(0.2)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                self.serve(self.request)
            except OSError:
                pass  # the gateway reset or gave up on the connection: part of the soak

        def serve(self, sock):
            while True:
                if state["mode"] == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    return
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(65536)
                    if not data:
                        return
                    head += data
                head, _, rest = head.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                need = int(headers.get("content-length", "0"))
                got = len(rest)
                while got < need:
                    data = sock.recv(min(65536, need - got))
                    if not data:
                        return
                    got += len(data)
                if state["mode"] == "slow":
                    time.sleep(3)
                if target.startswith("/big"):
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
                    piece = b"x" * 65536
                    for _ in range(BIG // len(piece)):
                        sock.sendall(piece)
                    continue
                body = json.dumps({"path": target, "received": got}).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    threading.Thread(target=watch_mode, daemon=True).start()
    with Server(("127.0.0.1", port), Handler) as srv:
        srv.serve_forever()


class Target:
    def __init__(self, port, workdir):
        self.port = port
        self.mode_file = os.path.join(workdir, "mode-%d" % port)
        self.proc = None
        self.stopped = False
        self.set_mode("normal")
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "upstream",
                                      str(self.port), self.mode_file])
        wait_port(self.port)

    def set_mode(self, mode):
        with open(self.mode_file, "w") as f:
            f.write(mode)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        if self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.stopped = False

    def normal(self):
        self.cont()
        self.set_mode("normal")
        if self.proc.poll() is not None:
            self.start()

    def close(self):
        self.cont()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---- helpers ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def upstream_sockets(pid, ports):
    """Sockets of pid connected to one of ports (pooled upstream connections)."""
    out = subprocess.run(["ss", "-Htanp"], capture_output=True, text=True).stdout
    n = 0
    for line in out.splitlines():
        if "pid=%d," % pid not in line:
            continue
        fields = line.split()
        peer = fields[4] if len(fields) > 4 else ""
        if any(peer.endswith(":%d" % p) for p in ports):
            n += 1
    return n


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def active_connections(admin):
    text = urllib.request.urlopen("http://%s/metrics" % admin, timeout=5).read().decode()
    return sum(float(m.group(1)) for m in
               re.finditer(r"^xgate_connections_active\{[^}]*\} (\S+)$", text, re.M))


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, kind, outcome):
        with self.lock:
            self.counts.setdefault(kind, {}).setdefault(outcome, 0)
            self.counts[kind][outcome] += 1


def request(port, raw, read_limit=None, read_for=None, timeout=6):
    """Sends raw, returns (status or error name, bytes read)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return "connect:" + type(e).__name__, 0
    try:
        s.sendall(raw)
        buf, start = b"", time.time()
        status = None
        while True:
            if read_for and time.time() - start > read_for:
                return (status or "abandoned"), len(buf)
            data = s.recv(65536 if not read_for else 32768)
            if not data:
                break
            buf += data if status is None else b""
            if status is None and b"\r\n" in buf:
                status = buf.split(b" ", 2)[1].decode()
                buf = b""
            if read_for:
                time.sleep(0.015)
            if read_limit and status:
                break
        return (status or "eof"), len(buf)
    except socket.timeout:
        return "timeout", 0
    except OSError as e:
        return type(e).__name__, 0
    finally:
        s.close()


def newconn_loop(port, stop, tally):
    raw = b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        tally.add("newconn", request(port, raw)[0])


def upload_loop(port, stop, tally):
    body = b"u" * UPLOAD
    raw = (b"POST /upload HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    while not stop.is_set():
        tally.add("upload", request(port, raw, read_limit=True)[0])


def slowread_loop(port, stop, tally):
    raw = b"GET /big HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        tally.add("slowread", request(port, raw, read_for=4)[0])


def run_wrk(port, seconds, tally):
    out = subprocess.run(["wrk", "-t1", "-c16", "-d%ds" % seconds, "--timeout", "5s",
                          "http://127.0.0.1:%d/" % port], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in", out)
    tally.add("keepalive", "requests=%s" % (m.group(1) if m else "?"))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for name, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(v):
                tally.counts.setdefault("keepalive", {})["err_" + name] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        tally.counts.setdefault("keepalive", {})["non_2xx"] = int(m.group(1))


def gateway_config(port, admin, targets, workers):
    return {
        "workers": workers,
        "listeners": [{"name": "public", "address": "127.0.0.1:%d" % port}],
        "admin": {"address": admin},
        "limits": {"max_body_bytes": 4 << 20, "idle_timeout_ms": 5000},
        "upstreams": [{
            "name": "app", "keepalive": 8, "retries": 1,
            "targets": [{"address": "127.0.0.1:%d" % t.port} for t in targets],
            "timeouts_ms": {"connect": 500, "read": 1000},
            "health_check": {"path": "/health", "interval_ms": 500, "timeout_ms": 300,
                             "unhealthy_after": 2, "healthy_after": 2},
            "circuit_breaker": {"failures": 5, "open_ms": 2000},
        }],
        "routes": [{"name": "all", "paths": ["/"], "upstream": "app"}],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=600)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="xgate-soak-")
    targets = [Target(free_port(), work) for _ in range(3)]
    port, admin = free_port(), "127.0.0.1:%d" % free_port()
    cfg_path = os.path.join(work, "xgate.json")
    with open(cfg_path, "w") as f:
        json.dump(gateway_config(port, admin, targets, args.workers), f)
    log = open(os.path.join(work, "xgate.log"), "w")
    gw = subprocess.Popen([os.path.join(args.build, "xgate"), "-c", cfg_path],
                          stdout=log, stderr=subprocess.STDOUT)
    failed = []
    try:
        wait_port(port)
        time.sleep(1.5)  # health checks settle
        base_fds = fd_count(gw.pid) - upstream_sockets(gw.pid, [t.port for t in targets])
        tally = Tally()
        # Warm-up: normal load, so the RSS baseline includes warmed allocator arenas.
        stop = threading.Event()
        loops = [threading.Thread(target=fn, args=(port, stop, Tally()), daemon=True)
                 for fn in (newconn_loop, upload_loop, slowread_loop)]
        for t in loops:
            t.start()
        run_wrk(port, args.warmup, Tally())
        stop.set()
        for t in loops:
            t.join(10)
        time.sleep(2)
        base_rss = proc_status(gw.pid, "VmRSS")

        stop = threading.Event()
        loops = [threading.Thread(target=fn, args=(port, stop, tally), daemon=True)
                 for fn in (newconn_loop, newconn_loop, upload_loop, slowread_loop)]
        for t in loops:
            t.start()
        wrk = threading.Thread(target=run_wrk, args=(port, args.duration, tally))
        wrk.start()
        faults = ["kill", "reset", "slow", "halfopen", "normal"]
        step, began, peak_rss = 0, time.time(), base_rss
        while time.time() - began < args.duration:
            victim = targets[step % len(targets)]
            for t in targets:
                t.normal()
            fault = faults[step % len(faults)]
            if fault == "kill":
                victim.kill()
            elif fault == "reset":
                victim.set_mode("reset")
            elif fault == "slow":
                victim.set_mode("slow")
            elif fault == "halfopen":
                victim.stop()
            tally.add("faults", fault)
            step += 1
            time.sleep(min(args.step, max(0, args.duration - (time.time() - began))))
            peak_rss = max(peak_rss, proc_status(gw.pid, "VmRSS"))
            if gw.poll() is not None:
                failed.append("the gateway exited with %s" % gw.returncode)
                break
        stop.set()
        wrk.join(args.duration + 30)
        for t in loops:
            t.join(15)
        for t in targets:
            t.normal()
        # Settle: idle client connections end, pools keep what they keep.
        deadline = time.time() + 30
        while time.time() < deadline and active_connections(admin) > 0:
            time.sleep(0.5)
        time.sleep(2)
        fds = fd_count(gw.pid) - upstream_sockets(gw.pid, [t.port for t in targets])
        rss = proc_status(gw.pid, "VmRSS")
        conns = active_connections(admin)
        growth = (rss - base_rss) * 100.0 / base_rss

        print("\nfault soak: %d s, step %d s, %d workers, 3 targets" %
              (args.duration, args.step, args.workers))
        print("\n| load | outcomes |\n|---|---|")
        for kind in sorted(tally.counts):
            outcomes = ", ".join("%s: %s" % kv for kv in sorted(tally.counts[kind].items()))
            print("| %s | %s |" % (kind, outcomes))
        print("\n| check | baseline | after | result |\n|---|---|---|---|")
        print("| open fds (excluding pooled upstream sockets) | %d | %d | %s |" %
              (base_fds, fds, "ok" if fds == base_fds else "LEAK"))
        print("| RSS KiB (peak %d) | %d | %d (%+.1f %%) | %s |" %
              (peak_rss, base_rss, rss, growth, "ok" if growth < 5 else "GREW"))
        print("| xgate_connections_active | 0 | %g | %s |" % (conns, "ok" if conns == 0 else "STUCK"))
        if fds != base_fds:
            failed.append("fds %d -> %d" % (base_fds, fds))
        if growth >= 5:
            failed.append("RSS grew %.1f %%" % growth)
        if conns:
            failed.append("%g connections still active" % conns)
        if gw.poll() is not None and not failed:
            failed.append("the gateway died")
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(15)
            except subprocess.TimeoutExpired:
                gw.kill()
        for t in targets:
            t.close()
        log.close()
    print("\ngateway log: %s/xgate.log" % work)
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "upstream":
        upstream_main(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(main())
