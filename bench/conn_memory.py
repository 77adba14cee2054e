"""Memory per client connection of xgate, HAProxy and NGINX (one worker/thread each) in front
of the same NGINX backend, in one run:
  idle     N keep-alive clients make one small request each and stay connected;
  stalled  M clients ask for an 8 MiB response and never read it (a 4 KiB receive buffer).
Each proxy is started fresh for each phase; the figure is the growth of its RSS (the master
and worker for NGINX) per connection, after warm-up connections.

  /usr/bin/python3 bench/conn_memory.py [N=10000] [M=1000]
Needs build/xgate, haproxy, nginx. Ports are free ones the kernel picks."""
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XGATE = os.path.join(ROOT, os.environ.get("BUILD", "build"), "xgate")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
M = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
WARM = 100
BIG = 8 << 20
# Without CAP_SYS_RESOURCE the hard limit caps every process; each side holds N + M.
LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if LIMIT < N + M + 1000:
    raise SystemExit("RLIMIT_NOFILE hard limit %d is too low for %d connections" % (LIMIT, N + M))
resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
# HAProxy wants two descriptors per connection it may hold: with a capped limit it gets
# fewer idle clients (the figure is per connection either way).
HAPROXY_MAXCONN = LIMIT // 2 - 50
work = tempfile.mkdtemp(prefix="xgate-connmem.")


def free_ports():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        yield port


ports = free_ports()
procs = []


def wait_port(port, secs=10):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open; xgate log: %s" % (port, open(os.path.join(work, "xgate.log")).read()[-400:] if os.path.exists(os.path.join(work, "xgate.log")) else ""))


def rss_kib(pid):
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
    except OSError:
        pass
    for p in pids:
        for line in open("/proc/%d/status" % p):
            if line.startswith("VmRSS"):
                total += int(line.split()[1])
    return total


def stop(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def nginx_conf(name, body):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    temp = "".join("%s_temp_path %s/%s;\n" % (t, d, t) for t in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = os.path.join(d, "nginx.conf")
    open(conf, "w").write("""worker_processes 1; daemon off; pid %s/nginx.pid;
error_log %s/error.log warn; worker_rlimit_nofile %d;
events { worker_connections %d; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s; %s %s }
""" % (d, d, LIMIT, LIMIT - 100, temp, body))
    return conf, d


def start_backend():
    port = next(ports)
    os.makedirs(os.path.join(work, "www"), exist_ok=True)
    with open(os.path.join(work, "www", "big"), "wb") as f:
        f.write(os.urandom(BIG))
    conf, d = nginx_conf("backend", """server { listen 127.0.0.1:%d backlog=4096; root %s/www;
        location = /small { default_type application/json; return 200 '{"ok":true}'; } }"""
                         % (port, work))
    p = subprocess.Popen(["nginx", "-c", conf, "-p", d], stderr=subprocess.DEVNULL)
    procs.append(p)
    wait_port(port)
    return port


def start_xgate(backend):
    port, admin = next(ports), next(ports)
    cfg = {"workers": 1, "listeners": [{"name": "http", "address": "127.0.0.1:%d" % port}],
           "admin": {"address": "127.0.0.1:%d" % admin},
           "limits": {"max_connections": 2 * (N + M)},
           "upstreams": [{"name": "b", "keepalive": 64,
                          "targets": [{"address": "127.0.0.1:%d" % backend}]}],
           "routes": [{"name": "all", "paths": ["/"], "upstream": "b"}]}
    path = os.path.join(work, "xgate.json")
    open(path, "w").write(json.dumps(cfg))
    p = subprocess.Popen(["sh", "-c", "ulimit -n %d; exec %s -c %s" % (LIMIT, XGATE, path)],
                         stderr=open(os.path.join(work, "xgate.log"), "a"))
    return p, port


def start_haproxy(backend):
    port = next(ports)
    path = os.path.join(work, "haproxy.cfg")
    open(path, "w").write("""global
    nbthread 1
    maxconn %d
    ulimit-n %d
defaults
    mode http
    timeout connect 1s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse always
frontend f
    bind 127.0.0.1:%d
    default_backend b
backend b
    server s 127.0.0.1:%d
""" % (HAPROXY_MAXCONN, LIMIT, port, backend))
    p = subprocess.Popen(["haproxy", "-f", path, "-db"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    return p, port


def start_nginx(backend):
    port = next(ports)
    conf, d = nginx_conf("proxy", """upstream b { server 127.0.0.1:%d; keepalive 64; }
        server { listen 127.0.0.1:%d backlog=4096; location / { proxy_pass http://b;
        proxy_http_version 1.1; proxy_set_header Connection ""; } }""" % (backend, port))
    p = subprocess.Popen(["nginx", "-c", conf, "-p", d], stderr=subprocess.DEVNULL)
    return p, port


def idle_client(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b'{"ok":true}' not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed before the response")
        got += chunk
    if not got.startswith(b"HTTP/1.1 200"):
        raise SystemExit("unexpected answer: %r" % got[:80])
    return s


def stalled_client(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def measure(start, backend, client, count):
    p, port = start(backend)
    try:
        wait_port(port)
        warm = [client(port) for _ in range(WARM)]
        time.sleep(1)
        r0 = rss_kib(p.pid)
        socks = [client(port) for _ in range(count)]
        time.sleep(2)
        r1 = rss_kib(p.pid)
        for s in socks + warm:
            s.close()
        return (r1 - r0) / count
    finally:
        stop(p)


try:
    backend = start_backend()
    print("conn-memory: %d idle keep-alive connections, %d stalled readers of an 8 MiB response"
          % (N, M))
    print("| proxy | idle KiB/conn | stalled reader KiB/conn |")
    print("|---|---:|---:|")
    for name, start, cap in (("xgate", start_xgate, N), ("haproxy", start_haproxy,
                             HAPROXY_MAXCONN - WARM - 50), ("nginx", start_nginx, N)):
        idle = measure(start, backend, idle_client, min(N, cap))
        stalled = measure(start, backend, stalled_client, M)
        print("| %s | %.2f (%d conns) | %.2f |" % (name, idle, min(N, cap), stalled))
        sys.stdout.flush()
finally:
    for p in procs:
        stop(p)
    shutil.rmtree(work, ignore_errors=True)
