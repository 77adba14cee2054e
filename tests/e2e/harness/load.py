"""Bounded load generation with wrk, parsed through bench/report.lua's summary line."""
import os
import subprocess
import tempfile

from .gateway import REPO

_SCRIPT = """
local dir = "%s"
wrk.method = "%s"
wrk.path = "%s"
%s
done = dofile(dir .. "/report.lua")
"""


def run_wrk(url, duration_s=3, connections=16, threads=1, method="GET", body=None,
            headers=None, timeout_s=None):
    """Runs wrk against url (scheme://host:port/path) and returns a dict of ints:
    requests, duration_us, p50_us, p90_us, p99_us, max_us, connect_err, read_err,
    write_err, status_err (non-2xx/3xx), timeout_err."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    lines = []
    for name, value in (headers or {}).items():
        lines.append('wrk.headers[%r] = %r' % (name, value))
    if body is not None:
        lines.append("wrk.body = %r" % body.decode("latin-1"))
    script = _SCRIPT % (REPO / "bench", method, path, "\n".join(lines))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        proc = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % duration_s,
             "--timeout", "%ds" % (timeout_s or max(2, duration_s)), "-s", fh.name,
             "%s://%s" % (parts.scheme, parts.netloc)],
            capture_output=True, text=True, timeout=duration_s + 30)
    finally:
        os.unlink(fh.name)
    for line in proc.stdout.splitlines():
        if line.startswith("XGBENCH "):
            return {k: int(v) for k, v in (f.split("=") for f in line.split()[1:])}
    raise AssertionError("wrk produced no summary (exit %d):\n%s%s" %
                         (proc.returncode, proc.stdout, proc.stderr))
