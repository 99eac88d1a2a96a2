"""Pure: closes whose cause was named after they were counted, moved to
their own reason and category in summary.json's totals.

A close is counted when it happens, under the reason the client could tell
(``transport_eof``: the TCP connection ended, no close frame). That an
intermediary closed it is known only from many closes together, at the
end of the run (soak.intermediary, soak.chain). :func:`reattribute` then
moves those closes, in the run's ``totals`` only, from their transport
reason to the named one (``intermediary_idle_timeout``,
``intermediary_reload``) and from category ``transport`` to
``intermediary``, and records what it moved in ``totals.closes_named``
(``{"intermediary_idle_timeout": {"transport_eof": 126}}``). The
per-interval records (intervals.jsonl) keep the reasons as counted: their
sums equal the totals with ``closes_named`` moved back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CATEGORY = "intermediary"
FROM_CATEGORY = "transport"
NAMED = "closes_named"


def reattribute(tot: dict[str, Any], entries: Iterable[Mapping[str, Any]]) -> None:
    """Move each entry's closes (``reason``: the named reason; ``reasons``:
    the counted reasons and how many) in ``tot``; nothing when none moved."""
    closes: dict[str, int] = tot.setdefault("closes", {})
    cats: dict[str, int] = tot.setdefault("closes_by_category", {})
    moved: dict[str, dict[str, int]] = {}
    for e in entries:
        new = str(e["reason"])
        for old, n in dict(e.get("reasons") or {}).items():
            n = min(int(n), int(closes.get(old, 0)))
            if n <= 0 or old == new:
                continue
            closes[old] -= n
            if not closes[old]:
                del closes[old]
            closes[new] = closes.get(new, 0) + n
            cats[FROM_CATEGORY] = cats.get(FROM_CATEGORY, 0) - n
            if cats[FROM_CATEGORY] <= 0:
                del cats[FROM_CATEGORY]
            cats[CATEGORY] = cats.get(CATEGORY, 0) + n
            into = moved.setdefault(new, {})
            into[old] = into.get(old, 0) + n
    if moved:
        tot["closes"] = dict(sorted(closes.items()))
        tot["closes_by_category"] = dict(sorted(cats.items()))
        tot[NAMED] = moved
