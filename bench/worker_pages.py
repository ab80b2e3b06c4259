"""Which memory pages an idle worker has to itself, and which objects lie in them (Linux, as root).

Usage::

    python bench/worker_pages.py                 # 6 workers in a row, pages of each
    python bench/worker_pages.py --objects 30    # and the 30 object kinds found most in them

A worker is forked from its skald's fork server and shares every page with it until one of the two
writes to it; in CPython touching an object (a refcount change) is a write. So the pages a worker
has to itself — its USS — are those it wrote (objects it touched, objects it made) and those the
fork server wrote after the fork. This starts a node skald on the embedded backend (a temporary
``SKALDS_HOME``) with ``PageProbe`` as its only class, runs ``--workers`` tasks one after another
and, in each worker after ``--idle`` seconds of idling with its link thread beating, reads
``/proc/self/pagemap`` and ``/proc/kpagecount`` (root only): a present page mapped once is the
worker's own. Then it lists the objects (every object the garbage collector tracks and what they
refer to) that lie in those pages. Compare two checkouts with ``PYTHONPATH=<checkout>``.
"""

from __future__ import annotations

import argparse
import array
import collections
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from skalds import Skalds
from skalds.config.skald_config import SkaldConfig
from skalds.worker.baseclass import BaseTaskWorker, run_main_handler

PAGE = os.sysconf("SC_PAGE_SIZE")
PFN_MASK = (1 << 55) - 1
SKALD_ID = "pages-1"


def own_pages() -> tuple[set[int], dict[str, int]]:
    """Page numbers of the present pages of writable mappings that only this process maps, and
    their count per mapping (``[heap]``, ``[anon]``, a library's name)."""
    own: set[int] = set()
    per_mapping: collections.Counter[str] = collections.Counter()
    with (
        open("/proc/self/maps") as maps,
        open("/proc/self/pagemap", "rb", buffering=0) as pagemap,
        open("/proc/kpagecount", "rb", buffering=0) as counts,
    ):
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
            if parts[1][1] != "w" or name in ("[vvar]", "[vdso]"):
                continue
            n = (end - start) // PAGE
            pagemap.seek(start // PAGE * 8)
            entries = array.array("Q")
            entries.frombytes(pagemap.read(n * 8))
            for i, entry in enumerate(entries):
                if not entry >> 63:  # not present
                    continue
                counts.seek((entry & PFN_MASK) * 8)
                if int.from_bytes(counts.read(8), "little") == 1:
                    own.add(start // PAGE + i)
                    per_mapping[name] += 1
    return own, dict(per_mapping)


def kind_of(obj: Any) -> str:
    t = type(obj)
    if t.__name__ == "function":
        return f"function {obj.__module__}.{obj.__qualname__}"
    if t.__name__ == "code":
        return f"code {obj.co_filename.rsplit('/', 2)[-1]}:{obj.co_qualname}"
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__} instance"


def objects_in(pages: set[int]) -> collections.Counter[str]:
    """How many objects of each kind lie (their first 64 bytes) in ``pages``."""
    gc.unfreeze()  # the fork server froze the inherited objects: list them too
    found: dict[int, Any] = {id(o): o for o in gc.get_objects()}
    for obj in list(found.values()):
        for ref in gc.get_referents(obj):
            found.setdefault(id(ref), ref)
    kinds: collections.Counter[str] = collections.Counter()
    for address, obj in found.items():
        first, last = address // PAGE, (address + 63) // PAGE
        if any(p in pages for p in range(first, last + 1)):
            kinds[kind_of(obj)] += 1
    return kinds


class ProbeModel(BaseModel):
    out: str
    idle: float = 3.0


class PageProbe(BaseTaskWorker[ProbeModel]):
    def initialize(self, data: ProbeModel) -> None:
        self.out, self.idle = data.out, data.idle

    @run_main_handler
    def main(self) -> None:
        end = time.monotonic() + self.idle
        while time.monotonic() < end:  # idle, as a waiting task: the link thread beats meanwhile
            time.sleep(0.25)
        pages, per_mapping = own_pages()  # first, before listing objects touches them all
        kinds = objects_in(pages)
        Path(self.out).write_text(json.dumps({"pages": len(pages), "per_mapping": per_mapping, "kinds": kinds}))


def run_skald() -> None:
    app = Skalds(SkaldConfig(skald_id=SKALD_ID, skald_mode="node"))
    app.register_task_worker(PageProbe)
    app.run()


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from skalds.client import SkaldsClient
    from skalds.model.task import Task

    home = tempfile.mkdtemp(prefix="skalds-pages-")
    env = {**os.environ, "SKALDS_HOME": home, "LOG_LEVEL": "WARNING"}
    os.environ["SKALDS_HOME"] = home
    with open(os.path.join(home, "skald.log"), "wb") as log:
        skald = subprocess.Popen([sys.executable, __file__, "--skald"], env=env, cwd=home, stdout=log, stderr=log)
    try:
        client = SkaldsClient()
        deadline = time.monotonic() + 30
        while not client.state.skald_alive(SKALD_ID):
            if time.monotonic() > deadline or skald.poll() is not None:
                sys.exit(f"the skald did not come up; see {home}/skald.log")
            time.sleep(0.05)
        results = []
        for k in range(args.workers):  # one at a time: a worker listing objects copies pages
            out = os.path.join(home, f"pages-{k}.json")
            attachments = {"out": out, "idle": args.idle}
            client.create_task(Task(id=f"pages-{k}", className="PageProbe", attachments=attachments), executor=SKALD_ID)
            deadline = time.monotonic() + args.idle + 60
            while not (os.path.exists(out) and os.path.getsize(out)):
                if time.monotonic() > deadline:
                    sys.exit(f"worker {k} did not report; see {home}/skald.log")
                time.sleep(0.1)
            results.append(json.loads(Path(out).read_text()))
        return results
    finally:
        skald.terminate()
        skald.wait(20)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skald", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=6, help="workers, one after another (default 6)")
    p.add_argument("--idle", type=float, default=3.0, help="seconds each idles before it counts (default 3)")
    p.add_argument("--objects", type=int, default=0, help="also list the N object kinds found most in them")
    args = p.parse_args()
    if args.skald:
        run_skald()
        return 0
    if os.geteuid() != 0:
        sys.exit("reading /proc/kpagecount needs root")
    results = measure(args)
    for k, r in enumerate(results):
        print(f"worker {k}: {r['pages']} pages ({r['pages'] * PAGE / 2**20:.2f} MB) of its own: {r['per_mapping']}")
    pages = sorted(r["pages"] for r in results)
    print(f"median {pages[len(pages) // 2]} pages")
    if args.objects:
        total: collections.Counter[str] = collections.Counter()
        for r in results:
            total.update(r["kinds"])
        print(f"object kinds most found in those pages (all {len(results)} workers):")
        for kind, n in total.most_common(args.objects):
            print(f"  {n:6d}  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
