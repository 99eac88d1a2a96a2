"""A results page opened in headless Chromium (the report and compare tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


def open_in_chromium(page: Path) -> str:
    """Open a page from disk in headless Chromium and return the DOM after
    load, with ``data-images`` (how many) and ``data-bad`` (how many failed to
    decode: naturalWidth 0) set on <body> by an injected script."""
    probe = page.with_name("probe.html")
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>window.onload=()=>{const bad=[...document.images]"
            ".filter(i=>!i.complete||i.naturalWidth===0).length;"
            "document.body.setAttribute('data-bad', String(bad));"
            "document.body.setAttribute('data-images', String(document.images.length));};"
            "</script></body>",
        )
    )
    out = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
