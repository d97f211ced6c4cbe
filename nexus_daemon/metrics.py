"""In-process counters and latency histograms for runs and RPC calls (`nexus sys:metrics`)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Metrics:
    """Counters plus the last 2,048 samples of each latency, enough for p50/p99 at a glance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=2048))

    def incr(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counters[name] += by

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self._samples[name].append(seconds)

    def observe_rpc(self, method: str, seconds: float) -> None:
        with self._lock:
            self.counters[f"rpc.calls.{method}"] += 1
            self._samples[f"rpc.{method}"].append(seconds)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            hist = {}
            for name, samples in self._samples.items():
                values = list(samples)
                hist[name] = {"count": len(values), "p50_ms": _ms(_quantile(values, 0.5)),
                              "p99_ms": _ms(_quantile(values, 0.99)), "max_ms": _ms(max(values) if values else None)}
            return {"counters": dict(self.counters), "latency": hist}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)
