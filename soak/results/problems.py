"""What a reader of a results directory could not read.

A run killed partway leaves a torn last line; a disk fault can leave garbage
anywhere. Readers skip what they cannot parse and say so here, one message
per skipped line (the first :data:`MAX_MESSAGES_PER_FILE` of a file; one more
message counts the rest) or missing file, and count the skipped lines per
file, so that damage is always reported and never dropped in silence.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Beyond this many skipped lines in one file, the rest are counted in one
# message: a file that is garbage throughout should not bury the others.
MAX_MESSAGES_PER_FILE = 20


class Problems:
    """The problems met while reading one run.

    ``lines`` are the messages (``"<path>: line 3: corrupt histogram,
    skipped"``), in the order found; ``skipped`` counts skipped lines by file
    name; ``missing`` lists the expected files that were not there."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.lines: list[str] = lines if lines is not None else []
        self.skipped: Counter[str] = Counter()
        self.missing: list[str] = []
        self._more: dict[Path, int] = {}  # the index in lines of a file's "N more"

    def skip(self, path: Path, n: int, why: str, *, last: bool = False) -> None:
        """Line ``n`` of ``path`` was not readable (``why``) and was skipped.
        ``last``: it was the file's last line and had no newline, the mark of
        a run stopped while writing it."""
        self.skipped[path.name] += 1
        torn = " (the last line, cut short: the run stopped while writing it)" if last else ""
        if self.skipped[path.name] <= MAX_MESSAGES_PER_FILE:
            self.lines.append(f"{path}: line {n}: {why}{torn}, skipped")
            return
        more = self.skipped[path.name] - MAX_MESSAGES_PER_FILE
        text = f"{path}: {more} more damaged line(s) skipped, the last: line {n}{torn}"
        if path in self._more:
            self.lines[self._more[path]] = text
        else:
            self._more[path] = len(self.lines)
            self.lines.append(text)

    def file_missing(self, path: Path) -> None:
        self.missing.append(path.name)
        self.lines.append(f"{path}: missing")

    def note(self, text: str) -> None:
        self.lines.append(text)

    @property
    def skipped_lines(self) -> int:
        return sum(self.skipped.values())
