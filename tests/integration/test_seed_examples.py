"""The 0.3.x example programs (``examples/edge``) run unchanged, with no servers at all."""

from __future__ import annotations

import shutil
import signal
import textwrap

from tests.support.procs import ROOT, Proc, base_env

EXAMPLE = ROOT / "examples" / "edge"


def test_seed_edge_example_runs_updates_and_releases(procs, home, tmp_path):
    # Given the example's program and YAML, copied as they are
    for name in ("my_worker.py", "all_workers.yml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    env = base_env(home)

    # When it runs (its config names Redis, Kafka and MongoDB hosts; none is running)
    p = Proc.python("my_worker.py", env=env, log=tmp_path / "out.log", cwd=tmp_path)
    procs.append(p)

    # Then before runs, then main, with the YAML's values
    p.wait_output(r"Starting MyWorker with RTSP URL: rtsp://192\.168\.1\.1/camera1")
    p.wait_output(r"RTSP URL: rtsp://192\.168\.1\.1/camera1, Fix Frame: 30")
    out = p.output()
    assert out.index("Starting MyWorker") < out.index("Fix Frame: 30")

    # When the YAML changes, the update handler gets a typed MyDataModel and main sees the new value
    yml = tmp_path / "all_workers.yml"
    yml.write_text(yml.read_text().replace("fixFrame: 30", "fixFrame: 45"))
    p.wait_output(r"Updating event for MyWorker with data: rtsp_url='rtsp://192\.168\.1\.1/camera1' fix_frame=45")
    p.wait_output(r"Fix Frame: 45")

    # When the skald gets SIGTERM, the worker is released and everything exits cleanly
    family = [c.pid for c in p.descendants()]
    p.signal(signal.SIGTERM)
    assert p.wait(10) == 0
    out = p.output()
    assert "worker TaskWorker1: terminated by SIGTERM, releasing" in out
    assert "worker TaskWorker1 exited (Cancelled, code 143, shutdown)" in out
    assert family and not any(_alive(pid) for pid in family)


def test_seed_worker_runs_standalone(procs, tmp_path, home):
    # Given the example's data model and worker class, and a standalone start with no infrastructure
    source = (EXAMPLE / "my_worker.py").read_text()
    classes = source.split("from skalds import Skalds")[0]
    script = tmp_path / "standalone.py"
    script.write_text(
        classes
        + textwrap.dedent(
            """
            w = MyWorker()
            w.initialize(MyDataModel(rtspUrl="rtsp://cam/1", fixFrame=3))
            raise SystemExit(w.start())
            """
        )
    )
    p = Proc.python(script, env=base_env(home), log=tmp_path / "out.log", cwd=tmp_path)
    procs.append(p)
    p.wait_output(r"Starting MyWorker with RTSP URL: rtsp://cam/1")
    p.wait_output(r"Fix Frame: 3")
    p.signal(signal.SIGTERM)
    assert p.wait(10) == 143
    assert "terminated by SIGTERM, releasing" in p.output()


def _alive(pid: int) -> bool:
    from tests.support.procs import alive

    return alive(pid)
