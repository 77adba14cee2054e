"""pytest fixtures for xgate end-to-end tests (run with /usr/bin/python3 -m pytest).

Fixtures (each also importable as a plain helper: `from conftest import free_port`):
  upstream(**opts) -> Upstream          threaded HTTP/1.1 test server, stopped at teardown
  gateway(config, env=None, ...) -> Gateway   build/xgate with config, ready to serve
  base_config(upstreams, routes, **top) -> dict
  free_port() -> int, http_raw(port, data, timeout=5) -> bytes
  xgate_bin() / xgatectl_bin() -> path under $XGATE_BUILD (default <repo>/build)
  xgatectl(*args) -> CompletedProcess
  NetNS (context manager class), netns (a ready NetNS, cleaned up at teardown)
Plain helpers: http_request(method, url, body, headers) -> Response (never raises on 4xx/5xx),
  parse_responses(raw), run_check(config, workdir) -> (code, output) for `xgate -t`,
  run_wrk(url, duration_s, connections, ...) -> dict, pattern_stream/pattern_sha256(size).
At teardown every gateway is stopped with SIGTERM; a test fails if the gateway crashed,
did not exit 0, or printed a sanitizer report (ASan/UBSan/LSan under XGATE_BUILD=build/asan).
"""
import atexit
import subprocess

import pytest

from harness import (REPO, Gateway, GatewayError, NetNS, Upstream, base_config, build_dir,
                     free_port, http_raw, http_request, parse_responses, pattern_sha256,
                     pattern_stream, run_check, run_wrk, scaled, wait_port, xgate_bin,
                     xgatectl_bin)

__all__ = [
    "REPO", "Gateway", "GatewayError", "NetNS", "Upstream", "base_config", "build_dir",
    "free_port", "http_raw", "http_request", "parse_responses", "pattern_sha256",
    "pattern_stream", "run_check", "run_wrk", "scaled", "wait_port", "xgate_bin", "xgatectl_bin",
    "xgatectl",
]

_all_gateways = []


@atexit.register
def _kill_leftovers():
    for gw in _all_gateways:
        gw.kill()


def xgatectl(*args, timeout=30, check=False, env=None):
    """Runs build/xgatectl with args; returns CompletedProcess with text output."""
    import os
    proc = subprocess.run([xgatectl_bin()] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO),
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode != 0:
        raise AssertionError("xgatectl %s exited %d:\n%s%s" % (
            " ".join(map(str, args)), proc.returncode, proc.stdout, proc.stderr))
    return proc


@pytest.fixture
def upstream():
    """Factory: upstream(name=..., status=..., body=..., delay_s=..., handler=...,
    close_after=N, close_silently=False, raw_response=bytes|callable, healthy=True,
    headers={...}, keep_body_max=1 MiB) -> Upstream."""
    servers = []

    def make(**opts):
        server = Upstream(**opts)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Remembers each phase's report so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def _print_log_tail(gw, lines=80):
    tail = gw.log().splitlines()[-lines:]
    print("--- gateway pid %d log (last %d lines) ---" % (gw.pid, len(tail)))
    print("\n".join(tail))


@pytest.fixture
def gateway(tmp_path, request):
    """Factory: gateway(config, env=None, args=None, expect_start_failure=False,
    wait=True, binary=None) -> Gateway, or (exit code, output) when a start failure
    is expected."""
    started = []

    def make(config, env=None, args=None, expect_start_failure=False, wait=True,
             binary=None):
        workdir = tmp_path / ("gw%d" % len(started))
        workdir.mkdir()
        gw = Gateway(config, workdir, env=env, args=args, binary=binary)
        gw.start()
        started.append(gw)
        _all_gateways.append(gw)
        if expect_start_failure:
            gw.expected_exit = True
            code = gw.wait_exit(10)
            if code is None:
                gw.kill()
                raise AssertionError("gateway was expected to fail at start but is running:\n"
                                     + gw.log())
            return code, gw.log()
        if wait:
            try:
                gw.wait_ready()
            except GatewayError:
                gw.kill()
                raise
        return gw

    yield make
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:
        for gw in started:
            _print_log_tail(gw)
    problems = []
    for gw in started:
        for problem in gw.finish():
            problems.append("gateway pid %d: %s" % (gw.pid, problem))
        _all_gateways.remove(gw)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(name="base_config")
def base_config_fixture():
    return base_config


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


@pytest.fixture(name="http_raw")
def http_raw_fixture():
    return http_raw


@pytest.fixture(name="xgate_bin")
def xgate_bin_fixture():
    return xgate_bin


@pytest.fixture(name="xgatectl_bin")
def xgatectl_bin_fixture():
    return xgatectl_bin


@pytest.fixture(name="xgatectl")
def xgatectl_fixture():
    return xgatectl


@pytest.fixture(name="NetNS")
def netns_class_fixture():
    return NetNS


@pytest.fixture
def netns():
    with NetNS() as ns:
        yield ns
