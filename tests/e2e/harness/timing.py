"""Deadlines for slow machines.

XGATE_TIME_SCALE (default 1) multiplies how long tests wait for something to happen:
readiness, log lines, requests arriving, a transfer finishing, a process exiting. It
never stretches what a test measures or paces (rate windows, flood durations), so a
scaled run asserts the same behaviour. `make test-kernels` sets it under QEMU TCG,
where the guest runs several times slower than the host.
"""
import os


def _scale():
    raw = os.environ.get("XGATE_TIME_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError("XGATE_TIME_SCALE=%r is not a number" % raw) from None
    if value < 1:
        raise RuntimeError("XGATE_TIME_SCALE=%r must be at least 1" % raw)
    return value


TIME_SCALE = _scale()


def scaled(seconds):
    """seconds, stretched by XGATE_TIME_SCALE."""
    return seconds * TIME_SCALE
