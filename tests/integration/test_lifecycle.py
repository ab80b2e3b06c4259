"""Hook order and release-exactly-once on every way out, in real processes."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from tests.support.procs import Proc, base_env, wait_for
from tests.support.workers import read_events

STANDALONE = textwrap.dedent(
    """
    import sys
    from tests.support.workers import Recorder, RecorderModel
    w = Recorder(task_id="solo")
    w.initialize(RecorderModel.model_validate({json}))
    raise SystemExit(w.start())
    """
)


def run_standalone(tmp: Path, home: Path, attachments: dict) -> Proc:
    script = tmp / "solo.py"
    script.write_text(STANDALONE.replace("{json}", repr(json.dumps(attachments)).join(["json.loads(", ")"])))
    script.write_text("import json\n" + script.read_text())
    return Proc.python(script, env=base_env(home, EVENTS_FILE=str(tmp / "ev.jsonl")), log=tmp / "out.log")


def kinds(tmp: Path) -> list[str]:
    return [e["event"] for e in read_events(str(tmp / "ev.jsonl"))]


def test_normal_end(tmp_path, home, procs):
    p = run_standalone(tmp_path, home, {"duration": 0})
    procs.append(p)
    assert p.wait(20) == 0
    assert kinds(tmp_path) == ["before", "main", "after", "release"]


def test_exception_runs_error_handler_then_release(tmp_path, home, procs):
    p = run_standalone(tmp_path, home, {"duration": 0, "fail": True})
    procs.append(p)
    assert p.wait(20) == 1
    assert kinds(tmp_path) == ["before", "main", "error", "release"]
    assert "boom from main" in p.output()  # the traceback is logged


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_releases_once(tmp_path, home, procs, sig, code):
    p = run_standalone(tmp_path, home, {"duration": 30})
    procs.append(p)
    wait_for(lambda: "main" in kinds(tmp_path), what="main")
    p.signal(sig)
    p.signal(sig)  # a second signal must not run release again
    assert p.wait(20) == code
    assert kinds(tmp_path) == ["before", "main", "release"]
