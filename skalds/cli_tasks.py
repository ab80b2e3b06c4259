"""``skalds task …``: tasks from the command line, through a controller or straight from the store.

With a controller URL (``--url`` or ``SKALDS_CONTROLLER_URL``; token from ``SKALDS_API_TOKEN``)
every command goes through its REST API, so validation, dispatch and events happen as they do for
any client. Without one, ``list`` and ``show`` read the configured task store directly (the
embedded file by default); changing tasks needs a controller.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skalds.errors import SkaldsError

task_app = typer.Typer(
    help="Tasks: list / show (controller or store), create / update / cancel / pause / resume (controller).",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", envvar="SKALDS_CONTROLLER_URL", help="Controller URL, e.g. http://127.0.0.1:8000")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="SKALDS_API_TOKEN", help="API token", show_default=False)
]
StoreOption = Annotated[str | None, typer.Option(help="Store URL when no controller is given (default: configuration)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]

_STATUS_STYLE = {
    "Running": "green",
    "Finished": "blue",
    "Failed": "red",
    "Cancelled": "magenta",
    "Paused": "yellow",
    "Assigning": "cyan",
}


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


# ---- sources --------------------------------------------------------------------------------
class _Api:
    """A small client of the controller's REST API that turns its JSON errors into exits."""

    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the controller at {self._http.base_url}: {exc}", 1)
            raise
        if response.is_success:
            body: dict[str, Any] = response.json() if response.content else {}
            return body
        try:
            error = response.json().get("error", {})
            message = f"{error.get('code', response.status_code)}: {error.get('message', response.text)}"
            for detail in error.get("details") or []:
                message += f"\n  {detail.get('field', '')}: {detail.get('message', detail)}"
        except ValueError:
            message = f"HTTP {response.status_code}: {response.text[:500]}"
        _fail(message, 1)
        raise AssertionError("unreachable")


def _store(store_url: str | None) -> Any:
    from skalds.backends.factory import open_store, store_options
    from skalds.config.skald_config import SkaldConfig

    config = SkaldConfig()
    url = store_url or config.resolved_store_url()
    try:
        return open_store(url, **store_options(url, config))
    except SkaldsError as exc:
        _fail(str(exc))


def _item(doc: dict[str, Any]) -> dict[str, Any]:
    """A task as the API shows it (``type``, ``status``...), from an API item or a stored task."""
    return {
        **doc,
        "type": doc.get("type", doc.get("className")),
        "status": doc.get("status", doc.get("lifecycleStatus")),
    }


# ---- rendering ------------------------------------------------------------------------------
def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%m-%d %H:%M:%S")


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status


def _table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("id", "class", "status", "executor", "mode", "prio", "heartbeat", "created", "updated"):
        table.add_column(col, no_wrap=col in ("id", "status", "created", "updated"))
    for t in items:
        beat = t.get("heartbeat")
        table.add_row(
            str(t["id"]),
            str(t.get("type")),
            _styled(str(t.get("status"))),
            t.get("executor") or "-",
            str(t.get("mode", "-")),
            str(t.get("priority", 0)),
            "-" if beat is None else str(beat),
            _when(t.get("createDateTime")),
            _when(t.get("updateDateTime")),
        )
    return table


def _show(item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(item))
        return
    table = Table(show_header=False, title=f"task {item['id']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in item.items():
        if key in ("attachments", "result", "type", "status"):
            continue
        if key.endswith("DateTime"):
            value = _when(value)
        elif key == "lifecycleStatus":
            value = _styled(str(value))
        table.add_row(key, "-" if value is None else str(value))
    table.add_row("attachments", json.dumps(item.get("attachments"), indent=2, ensure_ascii=False))
    if item.get("result") is not None:
        table.add_row("result", json.dumps(item["result"], indent=2, ensure_ascii=False))
    console.print(table)


def _json_arg(text: str, what: str) -> dict[str, Any]:
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            _fail(f"{what}: file {path} does not exist")
        text = path.read_text()
    try:
        value = json.loads(text)
    except ValueError as exc:
        _fail(f"{what} must be a JSON object (or @file.json): {exc}")
        raise
    if not isinstance(value, dict):
        _fail(f"{what} must be a JSON object, got {type(value).__name__}")
    result: dict[str, Any] = value
    return result


# ---- commands -------------------------------------------------------------------------------
@task_app.command("list")
def task_list(
    status: Annotated[str | None, typer.Option(help="Filter by lifecycle status")] = None,
    class_name: Annotated[str | None, typer.Option("--class", help="Filter by worker class")] = None,
    executor: Annotated[str | None, typer.Option(help="Filter by skald id")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show (at most 100 through a controller)")] = 50,
    url: UrlOption = None,
    token: TokenOption = None,
    store_url: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tasks."""
    from skalds.model.task import TaskLifecycleStatus

    statuses = None
    if status:
        try:
            statuses = (TaskLifecycleStatus(status.capitalize()),)
        except ValueError:
            _fail(f"unknown status {status!r} (one of: {', '.join(s.value for s in TaskLifecycleStatus)})")
    if url:
        params: dict[str, Any] = {"page": 1, "pageSize": max(1, min(limit, 100))}
        if statuses:
            params["status"] = statuses[0].value
        if class_name:
            params["type"] = class_name
        if executor:
            params["executor"] = executor
        page = _Api(url, token).call("GET", "/api/tasks", params=params)
        items, total = [_item(t) for t in page["items"]], page["total"]
    else:
        from skalds.backends.store.base import TaskQuery

        found = _store(store_url).list(
            TaskQuery(statuses=statuses, class_name=class_name, executor=executor, limit=limit)
        )
        items, total = [_item(t.to_json_dict()) for t in found.items], found.total
    if as_json:
        console.print_json(json.dumps(items))
        return
    console.print(_table(items, f"tasks ({len(items)} of {total})"))


@task_app.command("show")
def task_show(task_id: str, url: UrlOption = None, token: TokenOption = None, store_url: StoreOption = None,
              as_json: JsonOption = False) -> None:  # fmt: skip
    """Show one task with its attachments."""
    if url:
        _show(_api_item(url, token, task_id), as_json)
        return
    task = _store(store_url).get(task_id)
    if task is None:
        _fail(f"no task with id {task_id!r}", 1)
        return
    _show(_item(task.to_json_dict()), as_json)


def _api_item(url: str, token: str | None, task_id: str) -> dict[str, Any]:
    return _item(_Api(url, token).call("GET", f"/api/tasks/{task_id}"))


def _need_url(url: str | None) -> str:
    if not url:
        _fail("this command needs a controller: give --url or set SKALDS_CONTROLLER_URL")
    assert url is not None
    return url


@task_app.command("create")
def task_create(
    class_name: Annotated[str, typer.Option("--class", help="Worker class")],
    attachments: Annotated[str, typer.Option(help="JSON object, or @file.json")] = "{}",
    task_id: Annotated[str | None, typer.Option("--id", help="Task id (default: generated)")] = None,
    name: Annotated[str | None, typer.Option(help="Task name")] = None,
    priority: Annotated[int, typer.Option(help="0..10, higher first")] = 0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a task (the controller validates and dispatches it)."""
    body: dict[str, Any] = {"className": class_name, "attachments": _json_arg(attachments, "--attachments")}
    body["priority"] = priority
    if task_id:
        body["id"] = task_id
    if name:
        body["name"] = name
    item = _item(_Api(_need_url(url), token).call("POST", "/api/tasks", json=body))
    _show(item, as_json)


@task_app.command("update")
def task_update(
    task_id: str,
    attachments: Annotated[str, typer.Option(help="JSON object (merged onto the current values), or @file.json")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hot-update a task's attachments."""
    body = {"attachments": _json_arg(attachments, "--attachments")}
    _show(_item(_Api(_need_url(url), token).call("PUT", f"/api/tasks/{task_id}/attachments", json=body)), as_json)


def _set_status(task_id: str, status: str, url: str | None, token: str | None, as_json: bool) -> None:
    api = _Api(_need_url(url), token)
    item = api.call("PUT", f"/api/tasks/{task_id}/status", json={"status": status})
    _show(_item(item), as_json)


@task_app.command("cancel")
def task_cancel(task_id: str, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Cancel a task (its worker is stopped and released)."""
    _set_status(task_id, "Cancelled", url, token, as_json)


@task_app.command("pause")
def task_pause(task_id: str, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Pause a task: its worker stops and it is not dispatched until resumed."""
    _set_status(task_id, "Paused", url, token, as_json)


@task_app.command("resume")
def task_resume(task_id: str, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Resume a paused task (or run a failed / cancelled / finished one again)."""
    _set_status(task_id, "Created", url, token, as_json)


__all__ = ["task_app"]
