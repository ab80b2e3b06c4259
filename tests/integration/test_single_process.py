"""single_process mode: exit codes for Kubernetes, persistent restarts, manifests."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml as pyyaml

from tests.support.procs import ROOT, Proc, base_env, wait_for
from tests.support.workers import read_events

WORKERS = ROOT / "tests" / "support" / "workers.py"
SKALDS = [sys.executable, "-m", "skalds"]


def task_file(tmp: Path, attachments: str, persistent: bool = False) -> Path:
    path = tmp / "job.yml"
    path.write_text(
        "TaskWorkers:\n"
        "  job1:\n"
        "    className: Recorder\n"
        f"    isPersistent: {'true' if persistent else 'false'}\n"
        f"    attachments: {attachments}\n"
        "  job2:\n"
        "    className: Recorder\n"
    )
    return path


def run_sp(tmp: Path, home: Path, yml: Path) -> Proc:
    env = base_env(home, EVENTS_FILE=str(tmp / "ev.jsonl"))
    args = [*SKALDS, "run", "--module", str(WORKERS), "--mode", "single_process", "--yaml", str(yml)]
    return Proc(args, env, tmp / "out.log")


def kinds(tmp: Path) -> list[str]:
    return [e["event"] for e in read_events(str(tmp / "ev.jsonl"))]


def test_success_exits_0_and_runs_only_the_first_task(tmp_path, home, procs):
    p = run_sp(tmp_path, home, task_file(tmp_path, "{duration: 0}"))
    procs.append(p)
    assert p.wait(30) == 0
    assert kinds(tmp_path) == ["before", "main", "after", "release"]
    assert {e["task"] for e in read_events(str(tmp_path / "ev.jsonl"))} == {"job1"}


def test_failure_exits_non_zero(tmp_path, home, procs):
    p = run_sp(tmp_path, home, task_file(tmp_path, "{duration: 0, fail: true}"))
    procs.append(p)
    assert p.wait(30) == 1
    assert kinds(tmp_path) == ["before", "main", "error", "release"]


def test_sigterm_exits_143_after_release(tmp_path, home, procs):
    p = run_sp(tmp_path, home, task_file(tmp_path, "{duration: 60}"))
    procs.append(p)
    wait_for(lambda: "main" in kinds(tmp_path), timeout=20, what="main")
    p.signal(signal.SIGTERM)
    assert p.wait(20) == 143
    assert kinds(tmp_path) == ["before", "main", "release"]


def test_persistent_task_restarts_after_it_ends(tmp_path, home, procs):
    p = run_sp(tmp_path, home, task_file(tmp_path, "{duration: 0}", persistent=True))
    procs.append(p)
    wait_for(lambda: kinds(tmp_path).count("release") >= 2, timeout=20, what="two full runs")
    assert kinds(tmp_path)[:8] == ["before", "main", "after", "release"] * 2
    p.signal(signal.SIGTERM)
    assert p.wait(20) == 143


def test_nothing_to_run_exits_2_with_the_reason(tmp_path, home, procs):
    yml = tmp_path / "bad.yml"
    yml.write_text("TaskWorkers:\n  job1:\n    className: Nope\n")
    p = run_sp(tmp_path, home, yml)
    procs.append(p)
    assert p.wait(30) == 2
    assert "job1" in p.output() and "Nope" in p.output()


def test_k8s_prints_a_job_or_a_deployment(tmp_path):
    yml = task_file(tmp_path, "{duration: 1}")
    out = subprocess.run(
        [*SKALDS, "k8s", "--yaml", str(yml), "--image", "me/workers:1", "--module", "workers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds_ = [d["kind"] for d in pyyaml.safe_load_all(out) if d]
    assert sorted(kinds_) == ["ConfigMap", "Job"]
    shutil.copy(yml, tmp_path / "p.yml")
    (tmp_path / "p.yml").write_text(yml.read_text().replace("isPersistent: false", "isPersistent: true"))
    out = subprocess.run(
        [*SKALDS, "k8s", "--yaml", str(tmp_path / "p.yml"), "--image", "me/workers:1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(d["kind"] for d in pyyaml.safe_load_all(out) if d) == ["ConfigMap", "Deployment"]


def test_a_manifest_without_module_runs_the_images_own_program(tmp_path, home, procs):
    # Given manifests rendered without --module for a one-shot task
    yml = task_file(tmp_path, "{duration: 0}")
    out = subprocess.run(
        [*SKALDS, "k8s", "--yaml", str(yml), "--image", "me/workers:1"], capture_output=True, text=True, check=True
    )
    job = next(d for d in pyyaml.safe_load_all(out.stdout) if d["kind"] == "Job")
    config_map = next(d for d in pyyaml.safe_load_all(out.stdout) if d["kind"] == "ConfigMap")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container
    # When the image's program (registers its classes, then Skalds(SkaldConfig()).run()) starts
    # with the container's environment and the ConfigMap's file where the pod would mount it
    mounted = tmp_path / "etc-skalds"
    mounted.mkdir()
    (mounted / "tasks.yml").write_text(config_map["data"]["tasks.yml"])
    env = {e["name"]: e["value"] for e in container["env"]}
    env["YAML_FILE"] = env["YAML_FILE"].replace("/etc/skalds", str(mounted))
    program = tmp_path / "program.py"
    program.write_text(
        "from skalds import Skalds, SkaldConfig\n"
        "from tests.support.workers import Recorder\n"
        "app = Skalds(SkaldConfig())\n"
        "app.register_task_worker(Recorder)\n"
        "app.run()\n"
    )
    p = Proc(
        [sys.executable, str(program)],
        base_env(home, EVENTS_FILE=str(tmp_path / "ev.jsonl"), **env),
        tmp_path / "p.log",
    )
    procs.append(p)
    # Then it runs the entry as a Job would and exits 0
    assert p.wait(30) == 0, p.output()
    assert kinds(tmp_path) == ["before", "main", "after", "release"]
