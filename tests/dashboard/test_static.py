"""The dashboard's files: all shipped in the wheel, every module import resolvable, no CDN."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from skalds.controller.routes.dashboard import STATIC_DIR, STATIC_FILES
from tests.support.procs import ROOT

IMPORT = re.compile(r"""^\s*import\s[^;]*?from\s+["'](?P<spec>[^"']+)["']""", re.M)


def test_every_static_file_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["skalds.controller.dashboard"]
    files = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_served_files_and_their_imports_resolve():
    assert {"index.html", "login.html", "style.css", "js/app.js", "js/login.js"} <= set(STATIC_FILES)
    for name, path in STATIC_FILES.items():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, name
        if not name.endswith(".js"):
            continue
        base = name.rsplit("/", 1)[0]
        for match in IMPORT.finditer(text):
            spec = match["spec"]
            assert spec.startswith("./") or spec.startswith("../"), f"{name} imports {spec}: only relative modules"
            parts = base.split("/")
            for part in spec.split("/"):
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            assert "/".join(parts) in STATIC_FILES, f"{name} imports {spec}, which is not served"
    for page in ("index.html", "login.html"):
        html = STATIC_FILES[page].read_text()
        for ref in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', html):
            assert ref.removeprefix("/dashboard/static/") in STATIC_FILES, f"{page} refers to {ref}"
