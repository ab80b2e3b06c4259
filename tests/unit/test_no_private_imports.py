"""No module of the package imports another module's underscore names or underscore modules.

What one module shares with another gets a public name, so a private name can be changed without
reading the rest of the package. Ruff's ``PLC2701`` cannot keep this: it ignores imports from the
package being checked, which are exactly the ones that matter here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "skalds"

#: Being restructured (the agent and its policies, the worker side); checked again once that lands.
EXCLUDED = (
    "node/agent.py",
    "node/node_mode.py",
    "node/edge_mode.py",
    "node/_parts.py",
    "worker/",
)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(source: str, package: str) -> list[str]:
    """``line: statement`` for every import in ``source`` that names a private module or name.

    ``package`` is the dotted package of the module (relative imports are resolved against it).
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "skalds" and any(_private(p) for p in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] != "skalds":
                continue
            names = [alias.name for alias in node.names]
            if any(_private(p) for p in module.split(".")) or any(_private(n) for n in names):
                found.append(f"{node.lineno}: from {module} import {', '.join(names)}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(EXCLUDED):
            continue
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
        found += [f"skalds/{relative}:{line}" for line in private_imports(path.read_text(encoding="utf-8"), package)]
    assert found == []


def test_the_check_finds_private_names_and_modules() -> None:
    source = (
        "from skalds.node.yaml_tasks import load\n"
        "from skalds.taskfile.common import _dump\n"
        "from skalds.backends.store._docs import page\n"
        "import skalds.backends.bus._kafka_runtime\n"
        "from . import _helper\n"
        "from skalds import __version__\n"
        "from os import _exit\n"
    )
    assert private_imports(source, "skalds.node") == [
        "2: from skalds.taskfile.common import _dump",
        "3: from skalds.backends.store._docs import page",
        "4: import skalds.backends.bus._kafka_runtime",
        "5: from skalds.node import _helper",
    ]
