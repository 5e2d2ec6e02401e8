"""Every byte the suite sees of the program's output, kept for the secrets check.

Helpers that run esxi-suspend (or read a log it wrote) call `record`; at the end of the
session conftest.py searches all of it, and pytest's captured output, for the key passphrase
and the private key material (`secret_needles`), and fails the session on any hit.
"""

from __future__ import annotations

from pathlib import Path

RECORDED: list[tuple[str, str]] = []
SECRET_FILES: list[Path] = []
SECRET_STRINGS: list[str] = []


def record(source: str, text: str) -> None:
    if text:
        RECORDED.append((source, text))


def secret_needles() -> list[str]:
    """The passphrase, and each line of base64 inside every client private key file."""
    needles = [s for s in SECRET_STRINGS if s]
    for path in SECRET_FILES:
        try:
            text = path.read_text()
        except OSError:
            continue
        needles += [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.startswith("-----") and len(line.strip()) >= 16
        ]
    return needles


def find_secrets(texts: list[tuple[str, str]], needles: list[str]) -> list[str]:
    """`source: needle…` for every needle found in every text."""
    hits = []
    for source, text in texts:
        for needle in needles:
            if needle in text:
                hits.append(f"{source}: contains secret {needle[:6]}…")
    return hits
