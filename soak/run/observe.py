"""A sink that lets the run look at its events on their way to the real
sink: the parent of a ``--workers`` run sees its workers' events here too,
so what is computed from them (the intermediary idle timeouts,
:mod:`soak.intermediary`) covers the whole run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from soak.metrics import Interval
from soak.run.source import Sink


class ObservedSink:
    """Every event goes to ``observe`` first, then to ``sink``; everything
    else goes straight to ``sink``. ``observe`` must be cheap and never raise."""

    def __init__(self, sink: Sink, observe: Callable[[dict[str, Any]], None]) -> None:
        self.inner = sink
        self.observe = observe
        self.wall0 = sink.wall0

    def event(self, ev: dict[str, Any]) -> None:
        self.observe(ev)
        self.inner.event(ev)

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        return self.inner.write_interval(iv, extra)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        self.inner.write_json(name, data)

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        self.inner.write_lines(name, records)

    def close(self) -> None:
        self.inner.close()
