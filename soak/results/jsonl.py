"""JSON lines (``intervals.jsonl``, ``events.jsonl``, ``storms.jsonl``) and
JSON documents (``run.json``, ``summary.json``), written and read.

Lines are compact (no spaces after separators), one record each, ending in
a newline; documents are indented by two and end in a newline. Reading is
tolerant: a line that is not a JSON object is skipped and recorded, the
rest is still read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from soak.results.problems import Problems


def dumps(record: dict[str, Any]) -> str:
    """One record as a JSON line, without its newline."""
    return json.dumps(record, separators=(",", ":"))


def write_lines(target: Path, records: list[dict[str, Any]]) -> None:
    """A whole JSONL file at once. Raises OSError."""
    with open(target, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(dumps(rec) + "\n")


def write_document(target: Path, data: dict[str, Any]) -> None:
    """Atomically (re)write a JSON document: a temp file, fsync, rename, so
    a reader sees the old document or the new one, never half of one.
    Raises OSError."""
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def read_lines(path: Path, problems: Problems) -> Iterator[tuple[int, Any]]:
    """The line number and JSON value of each non-blank line of ``path``, one
    at a time. A line that is not JSON (bytes that are not UTF-8 included) is
    skipped and recorded in ``problems``. The caller checks the values'
    shape. Raises OSError (a missing file included)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError:
                problems.skip(path, n, "not JSON", last=not text.endswith("\n"))
                continue
            yield n, value


def read_records(path: Path, problems: Problems) -> Iterator[dict[str, Any]]:
    """:func:`read_lines`, keeping only JSON objects (other values are
    ignored, as they always were)."""
    for _n, value in read_lines(path, problems):
        if isinstance(value, dict):
            yield value
