"""Real small disks for full-disk tests: a tmpfs of a given size, and a file that fills it."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import missing


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"2m"``) mounted at ``where`` (created), lazily unmounted after
    the block whatever still holds it. Mounting needs root: skipped locally, a failure in CI."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        missing(f"a tmpfs mount ({done.stderr.decode(errors='replace').strip() or done.returncode}; needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(disk: Path, name: str = "filler") -> Path:
    """Write a file on ``disk`` until not one more byte fits; returns it (delete it to free)."""
    filler = disk / name
    with open(filler, "wb", buffering=0) as fh:
        for block in (1 << 16, 1):  # big blocks, then what a block could not take byte by byte
            try:
                while True:
                    fh.write(b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler
