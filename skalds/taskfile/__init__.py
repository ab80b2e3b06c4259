"""Edge skalds take their tasks from a YAML file that people write and edit by hand.

Because a person owns the file, loading it must never blow up on one bad entry: every problem
is reported with the file, task id, field and line so it can be fixed where it was typed, and
the good entries still run. Because workers may also *update* their attachments at run time,
the file is edited the way a careful person would: only the values that changed are touched,
comments, key order, blank lines and quoting stay as they were, and the write is atomic so a
crash or a concurrent reader never sees half a file. Because a few hundred bytes of nested YAML
aliases can stand for billions of values, every reader refuses a file whose aliases repeat more
than :data:`MAX_ALIAS_EXPANSION` values, before expanding anything.

The implementation is split by concern; this package re-exports the public API of its modules:
:mod:`.load` (loading and validation, :class:`YamlTaskEntry`), :mod:`.writeback`
(write-back), :mod:`.extract` (one entry on its own), :mod:`.layout` (keeping the
file's layout when ruamel rewrites it) and :mod:`.common` (shared plumbing).
"""

from __future__ import annotations

import os
from pathlib import Path

from skalds.taskfile.common import ALIAS_TEXT_UNIT, MAX_ALIAS_EXPANSION, ROOT_KEY
from skalds.taskfile.extract import single_entry_yaml
from skalds.taskfile.load import (
    ENTRY_KEYS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TASK_ID_MAX_LENGTH,
    YamlTaskEntry,
    load_task_file,
)
from skalds.taskfile.writeback import write_back_attachments

__all__ = [
    "ALIAS_TEXT_UNIT",
    "ENTRY_KEYS",
    "MAX_ALIAS_EXPANSION",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "ROOT_KEY",
    "TASK_ID_MAX_LENGTH",
    "YamlTaskEntry",
    "file_signature",
    "load_task_file",
    "single_entry_yaml",
    "write_back_attachments",
]


def file_signature(path: str | Path) -> tuple[int, int, int] | None:
    """``(st_mtime_ns, st_size, st_ino)`` of ``path``, or ``None`` when it cannot be stat'ed.

    Pollers compare signatures to notice that someone changed the file. The inode is part of it
    because editors (and :func:`write_back_attachments`) replace the file rather than rewrite it.
    A caller that writes the file itself (write-back) must record the signature right after its
    write, so that the next poll does not mistake its own write for an outside change.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
