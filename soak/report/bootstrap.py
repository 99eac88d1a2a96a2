"""Compact histograms and a bootstrap of percentile differences.

Plain Python, no NumPy. A decoded HdrHistogram is ~23,000 counters; one
interval of heartbeat RTTs fills a few hundred of them. Each interval is
turned once into a :class:`Compact` (sorted values, their counts), which is
all the bootstrap needs.

Percentiles follow HdrHistogram's rule exactly (``get_value_at_percentile``):
the target count is ``max(1, int(q/100 * total + 0.5))``, the answer is the
highest value equivalent to the first bucket whose cumulative count reaches
it. So a percentile of a merged :class:`Compact` equals the percentile of the
merged HdrHistogram.

The bootstrap resamples whole intervals with replacement (an interval is the
unit of independence we can honestly claim: samples inside one interval share
the same network weather). Drawing intervals with replacement gives each
interval a weight ``w_i``; the resampled histogram's cumulative count at a
value ``v`` is ``sum_i w_i * cum_i(v)``. A percentile is then found by binary
search over the sorted union of all values, probing one column
``[cum_i(v) for i]`` at a time; columns are computed lazily and cached, and
the searches keep touching the same few columns near each percentile, so the
cost per resample is ``O(log K * n)`` rather than ``O(n * values per
interval)``.
"""

from __future__ import annotations

import bisect
import math
import operator
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 1
CONFIDENCE = 0.95
# With fewer intervals holding samples than this, resampling intervals says
# nothing useful; differences are then never called significant.
MIN_INTERVALS = 5
# A tail percentile estimated from a handful of samples beyond it (p99.9 of
# 2,000 samples rests on 2) is not trusted either: each run needs this many
# samples above the percentile.
MIN_TAIL = 10
# Beyond this many intervals, consecutive intervals are resampled together in
# blocks (a block bootstrap): the cost of a resample grows with the number of
# units, and neighbouring intervals of a long soak are not independent anyway.
MAX_UNITS = 500


@dataclass(frozen=True)
class Compact:
    """A histogram as sorted distinct values (microseconds, each the highest
    value equivalent to its HdrHistogram bucket) and their counts."""

    values: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, q: float) -> int | None:
        """HdrHistogram's value at percentile ``q`` (0..100); None when empty."""
        total = self.total
        if not total:
            return None
        target = target_count(q, total)
        running = 0
        for v, c in zip(self.values, self.counts, strict=True):
            running += c
            if running >= target:
                return v
        return self.values[-1]

    @property
    def max(self) -> int | None:
        return self.values[-1] if self.values else None


EMPTY = Compact((), ())


def target_count(q: float, total: int) -> int:
    return max(int(min(q, 100.0) * total / 100 + 0.5), 1)


def compact(hist: Any) -> Compact:
    """An ``hdrh`` HdrHistogram as a :class:`Compact`."""
    if not hist.get_total_count():
        return EMPTY
    index = hist.get_counts_array_index
    # only the counters between the smallest and the largest value recorded
    n = min(hist.encoder.payload.counts_len, index(hist.max_value) + 1)
    lo = min(max(index(hist.min_value), 0), n) if 0 < hist.min_value <= hist.max_value else 0
    counts = hist.counts[lo:n]
    nonzero = [i for i, c in enumerate(counts, lo) if c]
    # index -> value is the same for every histogram of one configuration
    key = (hist.unit_magnitude, hist.sub_bucket_half_count_magnitude, hist.sub_bucket_count)
    cache = _VALUE_OF_INDEX.setdefault(key, {})
    values = []
    for i in nonzero:
        v = cache.get(i)
        if v is None:
            v = cache[i] = hist.get_highest_equivalent_value(hist.get_value_from_index(i))
        values.append(v)
    return Compact(tuple(values), tuple(counts[i - lo] for i in nonzero))


_VALUE_OF_INDEX: dict[tuple[int, int, int], dict[int, int]] = {}


def blocks(intervals: Sequence[Compact], max_units: int) -> list[Compact]:
    """The intervals with samples, consecutive ones merged into equal
    blocks when there are more than ``max_units`` of them."""
    kept = [iv for iv in intervals if iv.values]
    size = math.ceil(len(kept) / max_units) if kept else 1
    if size <= 1:
        return kept
    return [merge(kept[i : i + size]) for i in range(0, len(kept), size)]


def merge(parts: Iterable[Compact]) -> Compact:
    acc: dict[int, int] = {}
    for p in parts:
        for v, c in zip(p.values, p.counts, strict=True):
            acc[v] = acc.get(v, 0) + c
    keys = sorted(acc)
    return Compact(tuple(keys), tuple(acc[k] for k in keys))


class _Resampler:
    """One run's intervals, ready for weighted percentile queries on a grid
    of values shared with the other runs."""

    def __init__(self, intervals: Sequence[Compact], grid: Sequence[int]) -> None:
        self.intervals = [iv for iv in intervals if iv.values]
        self.n = len(self.intervals)
        self.grid = grid
        self._values = [iv.values for iv in self.intervals]
        self._cums = [(0, *accumulate(iv.counts)) for iv in self.intervals]
        self._totals = [c[-1] for c in self._cums]
        self._cols: dict[int, list[int]] = {}

    def column(self, k: int) -> list[int]:
        col = self._cols.get(k)
        if col is None:
            v = self.grid[k]
            br = bisect.bisect_right
            col = [cum[br(vals, v)] for vals, cum in zip(self._values, self._cums, strict=True)]
            self._cols[k] = col
        return col

    def weights(self, rng: random.Random) -> list[int]:
        w = [0] * self.n
        for i in rng.choices(range(self.n), k=self.n):
            w[i] += 1
        return w

    def percentiles(self, w: list[int], qs: Sequence[float]) -> list[int]:
        """The grid values at percentiles ``qs`` (ascending) of the
        histogram with interval weights ``w``."""
        total = sum(map(operator.mul, w, self._totals))
        out: list[int] = []
        lo = 0
        for q in qs:
            target = target_count(q, total)
            hi = len(self.grid) - 1  # the grid holds every value: cum(hi) == total
            while lo < hi:
                mid = (lo + hi) // 2
                if sum(map(operator.mul, w, self.column(mid))) >= target:
                    hi = mid
                else:
                    lo = mid + 1
            out.append(self.grid[lo])
        return out


@dataclass(frozen=True)
class Interval:
    """A confidence interval of a difference, in microseconds."""

    q: float
    diff: float  # observed: percentile(B) - percentile(A) on the merged histograms
    low: float
    high: float
    enough_data: bool

    @property
    def significant(self) -> bool:
        return self.enough_data and (self.low > 0 or self.high < 0)


def bootstrap_diff(
    a: Sequence[Compact],
    b: Sequence[Compact],
    qs: Sequence[float] = (50.0, 99.0, 99.9),
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
    max_units: int = MAX_UNITS,
) -> list[Interval]:
    """95% bootstrap CIs of ``percentile(B) - percentile(A)`` for each q,
    resampling each run's intervals (or blocks of consecutive intervals, see
    :data:`MAX_UNITS`) with replacement. Deterministic for a given seed."""
    qs = sorted(qs)
    ma, mb = merge(a), merge(b)
    grid = merge([ma, mb]).values
    ra, rb = _Resampler(blocks(a, max_units), grid), _Resampler(blocks(b, max_units), grid)
    if not ra.n or not rb.n:
        raise ValueError("both runs need at least one interval with samples")
    observed = [float(mb.percentile(q) or 0) - float(ma.percentile(q) or 0) for q in qs]
    with_samples = min(sum(1 for iv in a if iv.values), sum(1 for iv in b if iv.values))
    enough_intervals = with_samples >= MIN_INTERVALS
    fewest = min(ma.total, mb.total)
    rng = random.Random(seed)
    diffs: list[list[int]] = [[] for _ in qs]
    for _ in range(resamples):
        pa = ra.percentiles(ra.weights(rng), qs)
        pb = rb.percentiles(rb.weights(rng), qs)
        for j in range(len(qs)):
            diffs[j].append(pb[j] - pa[j])
    out = []
    alpha = (1 - confidence) / 2
    for j, q in enumerate(qs):
        d = sorted(diffs[j])
        low = d[math.floor(alpha * (len(d) - 1))]
        high = d[math.ceil((1 - alpha) * (len(d) - 1))]
        enough = enough_intervals and fewest * (1 - q / 100) >= MIN_TAIL
        out.append(Interval(q, observed[j], float(low), float(high), enough))
    return out
