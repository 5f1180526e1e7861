"""Prometheus metrics in TF Serving's exposition format (reference §7)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable


class Metrics:
    """Counters and histograms printed in TF Serving's Prometheus format (§7)."""

    _BUCKETS = tuple(10.0 * 1.8**i for i in range(33))  # exponential; real boundaries not in the reference

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._histograms: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = {}

    def inc(self, name: str, labels: dict[str, str], value: float = 1) -> None:
        key = tuple(labels.items())
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + value

    def observe(self, name: str, labels: dict[str, str], value: float) -> None:
        key = tuple(labels.items())
        with self._lock:
            series = self._histograms.setdefault(name, {})
            samples = series.setdefault(key, [])
            samples.append(value)

    @staticmethod
    def prom_name(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", ":", name)

    @staticmethod
    def _labels(pairs: Iterable[tuple[str, str]]) -> str:
        return "{" + ",".join(f'{k}="{_prom_escape(v)}"' for k, v in pairs) + "}"

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines.append(f"# TYPE {self.prom_name(name)} counter")
                lines += [f"{self.prom_name(name)}{self._labels(k)} {_num(v)}" for k, v in series.items()]
            for name, series in sorted(self._histograms.items()):
                pname = self.prom_name(name)
                lines.append(f"# TYPE {pname} histogram")
                for key, samples in series.items():
                    for le in self._BUCKETS:
                        count = sum(1 for s in samples if s <= le)
                        lines.append(f"{pname}_bucket{self._labels(key + (('le', _num(le)),))} {count}")
                    lines.append(f"{pname}_bucket{self._labels(key + (('le', '+Inf'),))} {len(samples)}")
                    lines.append(f"{pname}_sum{self._labels(key)} {_num(sum(samples))}")
                    lines.append(f"{pname}_count{self._labels(key)} {len(samples)}")
        return "\n".join(lines) + "\n"


def _prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))

