"""Request counters and latency histograms, rendered as Prometheus text."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe in-process registry; each worker exposes its own series."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            counts = self._latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._latency_sum[(method, route)] += seconds

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += value

    def render(self) -> str:
        lines = [
            "# HELP cdp_http_requests_total HTTP requests by method, route and status.",
            "# TYPE cdp_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(
                    f'cdp_http_requests_total{{method="{method}",route="{_esc(route)}",'
                    f'status="{status}"}} {n}'
                )
            lines += [
                "# HELP cdp_http_request_duration_seconds Request latency.",
                "# TYPE cdp_http_request_duration_seconds histogram",
            ]
            for (method, route), counts in sorted(self._latency.items()):
                base = f'method="{method}",route="{_esc(route)}"'
                for bound, hits in zip(BUCKETS, counts, strict=False):
                    lines.append(
                        f'cdp_http_request_duration_seconds_bucket{{{base},le="{bound}"}} {hits:g}'
                    )
                lines.append(
                    f'cdp_http_request_duration_seconds_bucket{{{base},le="+Inf"}} {counts[-1]:g}'
                )
                lines.append(
                    f"cdp_http_request_duration_seconds_sum{{{base}}} "
                    f"{self._latency_sum[(method, route)]:.6f}"
                )
                lines.append(f"cdp_http_request_duration_seconds_count{{{base}}} {counts[-1]:g}")
            for (name, labels), value in sorted(self._counters.items()):
                label_text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
                lines.append(f"{name}{{{label_text}}} {value:g}")
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
