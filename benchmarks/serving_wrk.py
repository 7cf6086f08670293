"""The load generator of ``benchmarks/serving.py``: wrk on loopback, one fixed POST body.

:func:`measure` writes the body and a small Lua script (``wrk.method``/``wrk.body``/headers)
to a temporary folder, runs ``wrk --latency`` against one URL for a bounded time and parses
its report: requests/s, the latency distribution (p50, p99) and the failures (HTTP statuses
>= 400 as wrk counts them in "Non-2xx or 3xx responses", plus socket errors and timeouts).
A run with failures is marked as such; its figures are not comparable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measurement", "WrkError", "measure", "wrk_path"]

LUA = """\
local file = assert(io.open({body_path!r}, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
"""

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"
_PERCENTILE_RE = re.compile(rf"^\s*(\d+(?:\.\d+)?)%\s+{_DURATION}\s*$", re.MULTILINE)
_RATE_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL_RE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed a report this module cannot read."""


@dataclass(frozen=True)
class Measurement:
    """One wrk run: throughput, latency percentiles (seconds) and failure counts."""

    requests: int
    seconds: float
    requests_per_s: float
    p50_s: float
    p99_s: float
    non_2xx: int
    socket_errors: int

    @property
    def failures(self) -> int:
        """Responses that were not 2xx/3xx plus socket errors (connect, read, write, timeout)."""
        return self.non_2xx + self.socket_errors

    @property
    def ok(self) -> bool:
        """True when every request got a successful answer."""
        return self.failures == 0 and self.requests > 0


def wrk_path() -> str:
    """The wrk executable.

    Raises:
        WrkError: wrk is not on PATH (Debian/Ubuntu: ``apt-get install wrk``).
    """
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: apt-get install wrk (or brew install wrk)")
    return found


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNITS_S[unit]


def parse_report(text: str) -> Measurement:
    """Read wrk's ``--latency`` report.

    Raises:
        WrkError: A line the benchmark needs (requests/sec, 50% or 99%) is missing.
    """
    percentiles = {float(p): _seconds(v, u) for p, v, u in _PERCENTILE_RE.findall(text)}
    rate, total = _RATE_RE.search(text), _TOTAL_RE.search(text)
    if rate is None or total is None or 50.0 not in percentiles or 99.0 not in percentiles:
        raise WrkError(f"could not read wrk's report:\n{text.strip()[-800:]}")
    non_2xx = _NON_2XX_RE.search(text)
    sockets = _SOCKET_RE.search(text)
    return Measurement(
        requests=int(total.group(1)),
        seconds=_seconds(total.group(2), total.group(3)),
        requests_per_s=float(rate.group(1)),
        p50_s=percentiles[50.0],
        p99_s=percentiles[99.0],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def measure(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: int,
    threads: int = 2,
    timeout_s: int = 10,
) -> Measurement:
    """POST ``body`` to ``url`` over ``connections`` keep-alive connections for ``duration_s``.

    Raises:
        WrkError: wrk is missing, exits non-zero or prints no readable report.
    """
    threads = max(1, min(threads, connections))  # wrk needs a connection per thread
    with tempfile.TemporaryDirectory(prefix="conveyor-wrk-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(body_path=str(body_path)))
        command = [
            wrk_path(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            f"--timeout={timeout_s}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
        )
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return parse_report(proc.stdout)
