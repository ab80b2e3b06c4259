"""What a task id may be, wherever it comes from (the API, an edge YAML file).

Ids travel in URL paths, the ``Location`` header, cache and bus keys, log file names and shell
commands of operators: a small ASCII set needs no escaping in any of them, and no two spellings
of one id can look alike. ``:`` and ``@`` leave room for namespaced ids (``job:42``,
``report@2024-01``). Tasks made in Python by a program of the operator's own are not checked.
"""

from __future__ import annotations

import re

#: The characters of a task id, as a regular-expression character class body.
TASK_ID_CHARS = "A-Za-z0-9._:@-"
#: The longest task id.
MAX_TASK_ID_LENGTH = 128
#: The whole rule as one anchored pattern (also used by the API's JSON schema).
TASK_ID_PATTERN = rf"^[{TASK_ID_CHARS}]{{1,{MAX_TASK_ID_LENGTH}}}$"
_TASK_ID = re.compile(TASK_ID_PATTERN)


def task_id_problem(task_id: str) -> str | None:
    """What is wrong with ``task_id`` (a sentence to show the user), or None when it is fine."""
    if _TASK_ID.fullmatch(task_id):
        return None
    if not task_id:
        return "a task id must not be empty"
    if len(task_id) > MAX_TASK_ID_LENGTH:
        return f"a task id must be at most {MAX_TASK_ID_LENGTH} characters (this one has {len(task_id)})"
    bad = sorted({c for c in task_id if not re.fullmatch(f"[{TASK_ID_CHARS}]", c)})
    shown = ", ".join(repr(c) for c in bad[:5])
    return f"a task id may contain only letters A-Z a-z, digits and . _ : @ - (found {shown})"
