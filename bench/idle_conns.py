"""RSS per idle keep-alive connection: N clients each make one request through xgate (one
worker, bench/backend upstream) and stay connected; prints the gateway's RSS growth per
connection. Usage: /usr/bin/python3 bench/idle_conns.py build/xgate build/bench/backend 5000"""
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
X, BE = sys.argv[1], sys.argv[2]; N = int(sys.argv[3])
P = 34000 + os.getpid() % 1000
be = subprocess.Popen([BE, "127.0.0.1:%d" % (P + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cfg = {"workers": 1, "listeners": [{"name": "http", "address": "127.0.0.1:%d" % P}], "admin": {"address": "127.0.0.1:%d" % (P + 2)},
       "limits": {"max_connections": 50000},
       "upstreams": [{"name": "b", "targets": [{"address": "127.0.0.1:%d" % (P + 1)}]}], "routes": [{"name": "all", "paths": ["/"], "upstream": "b"}]}
work = tempfile.mkdtemp(prefix="xgate-idle.")
cfg_path = os.path.join(work, "xgate.json")
open(cfg_path, "w").write(json.dumps(cfg))
gw = subprocess.Popen(["sh", "-c", "ulimit -n 60000; exec %s -c %s" % (X, cfg_path)],
                      stderr=open(os.path.join(work, "xgate.log"), "w"))
time.sleep(1)
def rss():
    for l in open("/proc/%d/status" % gw.pid):
        if l.startswith("VmRSS"): return int(l.split()[1])
def one():
    s = socket.create_connection(("127.0.0.1", P)); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536); return s
warm = [one() for _ in range(100)]
time.sleep(0.5); r0 = rss()
socks = [one() for _ in range(N)]
time.sleep(1); r1 = rss()
print("idle keep-alive: %d conns, RSS +%d KiB, %.2f KiB per connection" % (N, r1 - r0, (r1 - r0) / N))
gw.terminate(); be.terminate(); gw.wait()
for s in socks + warm:
    s.close()
