"""One finding of ``soak doctor``, and the exit code of a set of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)

# sections, in the order the text output shows them
INPUT = "input"
CONSISTENCY = "consistency"
ENVIRONMENT = "environment"
SECTIONS = (INPUT, CONSISTENCY, ENVIRONMENT)

# The incident's recommended heartbeat settings (docs/design.md, "The incident").
RECOMMENDED = "interval 60 s, timeout = 3 x interval (180 s), maxMissed 3"


@dataclass(frozen=True)
class Finding:
    """``code`` is a stable id (for CI and tests); ``message`` says what was
    found and why it matters; ``fix`` what to change (empty for plain info)."""

    section: str
    severity: str
    code: str
    message: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if self.section not in SECTIONS:
            raise ValueError(f"unknown section {self.section!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
        }


def exit_code(findings: Iterable[Finding]) -> int:
    """0 nothing to fix, 1 warnings, 2 errors."""
    severities = {f.severity for f in findings}
    if ERROR in severities:
        return 2
    if WARNING in severities:
        return 1
    return 0


def fmt_s(seconds: float) -> str:
    """Seconds for messages: 120.0 -> "120 s", 0.25 -> "0.25 s"."""
    return f"{seconds:g} s"


def environment_finding(severity: str, code: str, message: str, fix: str = "") -> Finding:
    """A finding of the environment section (this machine, the target)."""
    return Finding(ENVIRONMENT, severity, code, message, fix)
