"""End-to-end test harness for xgate: upstream server, gateway runner, namespaces."""
from .gateway import (REPO, Gateway, GatewayError, base_config, build_dir, run_check,
                      sanitizer_report, xgate_bin, xgatectl_bin)
from .load import run_wrk
from .net import free_port, http_raw, http_request, parse_responses, wait_port
from .netns import NetNS
from .timing import TIME_SCALE, scaled
from .upstream import Request, Upstream, pattern_sha256, pattern_stream

__all__ = [
    "REPO", "Gateway", "GatewayError", "NetNS", "Request", "Upstream", "base_config",
    "build_dir", "free_port", "http_raw", "http_request", "parse_responses",
    "pattern_sha256", "pattern_stream", "run_check", "run_wrk", "sanitizer_report", "scaled",
    "TIME_SCALE", "wait_port", "xgate_bin", "xgatectl_bin",
]
