"""Pure: :class:`Chart`, what one chart of the report plots (plain lists,
so tests can check the numbers); :mod:`soak.report.charts` makes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Num = float | None


@dataclass
class Chart:
    """What one chart plots. ``x`` and every series have the same length;
    None is a gap (no data for that interval)."""

    name: str  # file stem: <name>.png
    title: str
    x: list[float]
    series: dict[str, list[Num]]
    y_label: str
    x_label: str = "time since start"
    log_y: bool = False
    # [start, end) seconds shaded as "tester was the bottleneck"
    shaded: list[tuple[float, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series.values() for v in s)
