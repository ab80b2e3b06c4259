"""The ``skalds`` command: run a skald, read tasks, print Kubernetes manifests."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console

from skalds.errors import SkaldsError

app = typer.Typer(help="Skalds: long-lived, typed tasks in isolated processes.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def load_module(spec: str) -> ModuleType:
    """Import ``spec``: a dotted module name or a path to a .py file."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            _fail(f"module file {spec} does not exist")
        sys.path.insert(0, str(path.resolve().parent))
        module_spec = importlib.util.spec_from_file_location(f"skalds_user_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            _fail(f"cannot import {spec}")
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
        return module
    sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        _fail(f"cannot import module {spec!r}: {exc}")
        raise


def worker_classes(module: ModuleType) -> list[type[Any]]:
    from skalds.worker.baseclass import BaseTaskWorker

    found: list[type[Any]] = []
    for _name, obj in inspect.getmembers(module, inspect.isclass):
        if not issubclass(obj, BaseTaskWorker) or obj is BaseTaskWorker or obj.__module__ != module.__name__:
            continue
        if obj._skalds_hooks["main"] or obj._run_main is not BaseTaskWorker._run_main:
            found.append(obj)
    return found


@app.command()
def run(
    module: Annotated[list[str], typer.Option("--module", "-m", help="Module or .py file with worker classes")],
    yaml: Annotated[str | None, typer.Option("--yaml", help="YAML task file (edge, single_process)")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="edge | node | single_process")] = None,
    skald_id: Annotated[str | None, typer.Option("--id", help="Skald id (default: SKALD_ID or generated)")] = None,
) -> None:
    """Run a skald with the worker classes found in the given modules."""
    from skalds.config.skald_config import SkaldConfig
    from skalds.skald import Skalds

    settings: dict[str, Any] = {}
    if yaml:
        settings["yaml_file"] = yaml
    if mode:
        settings["skald_mode"] = mode
    if skald_id:
        settings["skald_id"] = skald_id
    try:
        config = SkaldConfig(**settings)
    except ValueError as exc:
        _fail(str(exc))
        return
    classes = [cls for spec in module for cls in worker_classes(load_module(spec))]
    if not classes:
        _fail(f"no worker classes (BaseTaskWorker subclasses with a main handler) in {', '.join(module)}")
    skald = Skalds(config)
    try:
        for cls in classes:
            skald.register_task_worker(cls)
        code = skald.run(exit_process=False)
    except SkaldsError as exc:
        _fail(str(exc), 1)
        return
    raise typer.Exit(code)


@app.command()
def controller(
    host: Annotated[str | None, typer.Option(help="Bind address (default SYSTEM_CONTROLLER_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SYSTEM_CONTROLLER_PORT or 8000)")] = None,
    mode: Annotated[str | None, typer.Option(help="CONTROLLER | MONITOR | DISPATCHER")] = None,
) -> None:
    """Run the System Controller (REST API + monitor + dispatcher), configured from the environment."""
    _need_controller_extra()
    from skalds.controller.config import ControllerConfig
    from skalds.controller.main import main as run_controller

    settings: dict[str, Any] = {}
    if host:
        settings["system_controller_host"] = host
    if port:
        settings["system_controller_port"] = port
    if mode:
        settings["system_controller_mode"] = mode
    try:
        config = ControllerConfig(**settings)
    except ValueError as exc:
        _fail(str(exc))
        return
    run_controller(config)


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Bind address of the controller")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the controller")] = 8000,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Worker modules (default: skalds.dev_workers)")
    ] = None,
) -> None:
    """Controller + one node skald on the embedded backend, in one command."""
    _need_controller_extra()
    import os
    import signal
    import subprocess

    from skalds.controller.config import ControllerConfig
    from skalds.controller.main import main as run_controller
    from skalds.worker.forkserver import set_parent_death_signal

    modules = module or ["skalds.dev_workers"]
    env = dict(os.environ)
    for key in ("SKALDS_STORE_URL", "SKALDS_BUS_URL", "SKALDS_CACHE_URL"):
        env.pop(key, None)  # dev is the embedded backend, whatever the shell says
    args = [sys.executable, "-m", "skalds", "run", "--mode", "node", "--id", env.get("SKALD_ID", "dev-node")]
    for spec in modules:
        args += ["--module", spec]

    def die_with_dev() -> None:
        # The node gets SIGTERM (a graceful stop) if this process dies without stopping it (SIGKILL).
        set_parent_death_signal(signal.SIGTERM)

    node = subprocess.Popen(args, env=env, preexec_fn=die_with_dev)  # no threads yet: preexec_fn is safe
    err_console.print(
        f"[green]skalds dev[/green]: node skald pid {node.pid}; dashboard at http://{host}:{port}/ "
        f"(API docs at http://{host}:{port}/api/docs)",
        soft_wrap=True,  # a URL broken over two lines cannot be clicked or copied
    )
    try:
        config = ControllerConfig(
            system_controller_host=host,
            system_controller_port=port,
            system_controller_mode="DISPATCHER",
            store_url=None,
            bus_url=None,
            cache_url=None,
        )
        run_controller(config)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()


@app.command()
def k8s(
    yaml: Annotated[str, typer.Option("--yaml", help="YAML task file")],
    image: Annotated[str, typer.Option("--image", help="Container image that has skalds and your workers")],
    task: Annotated[str | None, typer.Option("--task", help="Task id (default: the first)")] = None,
    module: Annotated[
        str | None,
        typer.Option(
            "--module",
            help="Module with the worker classes; the pod runs `skalds run --module M`. Without it the "
            "pod runs the image's own entrypoint (your program calling Skalds(...).run()).",
        ),
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace")] = None,
) -> None:
    """Print a Deployment (isPersistent: true) or Job (false) plus a ConfigMap for one YAML task."""
    from skalds.k8s import render_manifests
    from skalds.taskfile import load_task_file, single_entry_yaml

    entries, errors = load_task_file(yaml, _AnyModels())
    for err in errors:
        err_console.print(f"[yellow]{err}[/yellow]")
    if not entries:
        _fail(f"{yaml}: no usable task")
    entry = entries.get(task) if task else next(iter(entries.values()))
    if entry is None:
        _fail(f"{yaml}: no task {task!r} (tasks: {', '.join(entries)})")
        return
    text = single_entry_yaml(yaml, entry.task_id)
    # Plain output: rich would read "[...]" in YAML as markup and wrap long lines.
    typer.echo(render_manifests(entry, image=image, yaml_text=text, module=module, namespace=namespace), nl=False)


class _AnyModels(dict[str, Any]):
    """For ``k8s``: accept any class name, keep attachments as written (no classes are imported)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        from pydantic import BaseModel, ConfigDict

        class Passthrough(BaseModel):
            model_config = ConfigDict(extra="allow")

        return Passthrough

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


def _need_controller_extra() -> None:
    missing = [name for name in ("fastapi", "uvicorn", "jsonschema") if importlib.util.find_spec(name) is None]
    if missing:
        _fail(f"the controller needs {', '.join(missing)}: pip install 'skalds[controller]'")


def main() -> None:
    from skalds.cli_skalds import skald_app
    from skalds.cli_tasks import task_app

    app.add_typer(task_app, name="task")
    app.add_typer(skald_app, name="skald")
    app()


if __name__ == "__main__":
    main()
