"""The project stands alone: no file cites documents that are not in this repository.

Wire formats, keys, settings and design principles are written in ``docs/`` (wire-formats.md,
configuration.md, design.md); comments and docs point there, never to a specification or a design
note kept somewhere else, nor to a path on one machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()

#: Citations of documents outside the repository, by what they look like.
CITATIONS: dict[str, re.Pattern[str]] = {
    "a section of an outside spec": re.compile(r"\bSPEC\s*§"),
    "an outside design principle": re.compile(r"\bDESIGN\s+principle"),
    "an outside document": re.compile(r"\b(?:SPEC|DESIGN|INFRA)\.md\b"),
    "a path beside the repository": re.compile(r"\.\./shared\b"),
    "a path on one machine": re.compile(r"/work/shared\b"),
}


def _files() -> list[Path]:
    """The repository's files: tracked ones and new ones not ignored."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout: the repository's file list is unknown")
    paths = (ROOT / name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name)
    return sorted(p for p in paths if p.is_file() and p.resolve() != THIS)


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (images)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def citations_in(text: str) -> list[tuple[int, str, str]]:
    """``(line, kind, quoted text)`` of every citation in ``text``."""
    found = []
    for kind, pattern in CITATIONS.items():
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((line, kind, " ".join(match.group().split())))
    return sorted(found)


def test_the_patterns_find_citations_however_they_are_wrapped() -> None:
    # Given citations as comments write them, one wrapped over two lines
    text = "x (SPEC §4)\ny (DESIGN\n    principle 3)\nsee ../shared/INFRA.md\nand `/work/shared/INFRA.md`\n"
    # Then each is found, at the line where it starts
    assert [(line, kind) for line, kind, _ in citations_in(text)] == [
        (1, "a section of an outside spec"),
        (2, "an outside design principle"),
        (4, "a path beside the repository"),
        (4, "an outside document"),
        (5, "a path on one machine"),
        (5, "an outside document"),
    ]
    # And words that merely contain the letters are not citations
    assert citations_in("_GLOB_SPECIAL = 1; SPECIAL_CASE; design principles in docs/design.md") == []


def test_no_file_cites_documents_outside_the_repository() -> None:
    # Given every file of the repository
    found = []
    for path in _files():
        text = _text(path)
        if text is None:
            continue
        for line, kind, quoted in citations_in(text):
            found.append(f"{path.relative_to(ROOT)}:{line}: {kind} ({quoted!r})")
    # Then none cites a document that is not in it (docs/ has the wire formats, keys, settings and
    # design principles)
    assert not found, "citations of documents outside the repository:\n" + "\n".join(found)
