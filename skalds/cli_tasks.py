"""``skalds task …``: tasks from the command line, through a controller or straight from the store.

With a controller URL (``--url`` or ``SKALDS_CONTROLLER_URL``; token from ``SKALDS_API_TOKEN``)
every command goes through its REST API, so validation, dispatch and events happen as they do for
any client. Without one, ``list``, ``show`` and ``history`` read the configured task store directly
(the embedded file by default) and ``logs`` the configured cache; changing tasks needs a controller.

``cancel``, ``pause``, ``resume`` and ``delete`` take one task id, several, or a filter
(``--status``, ``--class``, ``--executor``, ``--search``): several tasks go through
``POST /api/tasks/bulk``, previewed first (``--dry-run`` stops there) and confirmed unless ``--yes``.

Times (``create --not-before``, ``deadline --at``) are ms since the epoch or ISO 8601
(``2026-01-01T12:00:00Z``; without an offset, local time); durations (``deadline --in``, and
``--not-before`` as "from now") are ``90s``, ``10m``, ``2h``, ``1d``, ``1h30m``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skalds.errors import SkaldsError

task_app = typer.Typer(
    help="Tasks: list / show / history / logs (controller or store), create / update / deadline / "
    "requirements / cancel / pause / resume / delete, one or many by filter (controller).",
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
    """Print a task item; its ``warnings`` (of a create or an update) go to stderr."""
    if as_json:
        console.print_json(json.dumps(item))
        return
    table = Table(show_header=False, title=f"task {item['id']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in item.items():
        if key in ("attachments", "result", "type", "status", "warnings"):
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
    for warning in item.get("warnings") or []:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", markup=True, highlight=False, soft_wrap=True)


#: A duration: one or more number-unit pairs (``90s``, ``10m``, ``1h30m``, ``1.5d``).
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
#: ms since the epoch below this (3 March 1973) is surely a mistake (seconds, or a duration).
_EARLIEST_MS = 10**11
_DURATION_HELP = "a duration such as 90s, 10m, 2h, 1d or 1h30m"
_TIME_HELP = "ms since the epoch (1767225600000) or an ISO 8601 time (2026-01-01T12:00:00Z; no offset: local time)"


def _duration_ms(text: str) -> int | None:
    """``"1h30m"`` → 5,400,000; None when ``text`` is not a duration."""
    text = text.strip().lower()
    if not _DURATION.fullmatch(text):
        return None
    return round(sum(float(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(text)))


def _time_ms(text: str, option: str, *, durations: bool = False) -> int:
    """A time given on the command line as ms since the epoch (ms), ISO 8601, or (``durations``)
    a duration from now; exits saying what is accepted otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        ms = int(text)
        if ms < _EARLIEST_MS:
            hint = f"; for {ms} seconds from now give {ms}s" if durations else ""
            _fail(f"{option}: {text} ms since the epoch is before 1973: give {_TIME_HELP}{hint}")
        return ms
    if durations and (span := _duration_ms(text)) is not None:
        return int(time.time() * 1000) + span
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        also = f", or {_DURATION_HELP} from now" if durations else ""
        _fail(f"{option}: {text!r} is not a time: give {_TIME_HELP}{also}")
        raise
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return int(when.timestamp() * 1000)


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
#: ``--sort`` names → the API's ``order`` (ascending; ``--desc`` reverses).
SORTS = {"created": "createDateTime", "updated": "updateDateTime", "priority": "priority", "status": "lifecycleStatus"}


def _statuses(text: str | None) -> tuple[Any, ...] | None:
    """``"running,paused"`` → statuses (case-insensitive); exits naming the allowed ones otherwise."""
    from skalds.model.task import statuses_named

    if not text:
        return None
    try:
        return statuses_named(text)
    except ValueError as exc:
        _fail(str(exc))
        raise


StatusOption = Annotated[
    str | None, typer.Option(help="Lifecycle status, or several separated by commas (Running,Paused)")
]
ClassOption = Annotated[str | None, typer.Option("--class", help="Worker class")]
ExecutorOption = Annotated[str | None, typer.Option(help="Skald id")]
SearchOption = Annotated[
    str | None, typer.Option(help="Part of the task's id or name (case-sensitive), as the dashboard's search")
]


@task_app.command("list")
def task_list(
    status: StatusOption = None,
    class_name: ClassOption = None,
    executor: ExecutorOption = None,
    search: SearchOption = None,
    sort: Annotated[str, typer.Option(help="Sort by created, updated, priority or status")] = "created",
    desc: Annotated[bool, typer.Option("--desc", help="Descending (newest, highest, Z-A first)")] = False,
    page: Annotated[int, typer.Option(min=1, help="Page number")] = 1,
    page_size: Annotated[
        int, typer.Option("--page-size", "--limit", min=1, help="Rows per page (at most 100 through a controller)")
    ] = 50,
    url: UrlOption = None,
    token: TokenOption = None,
    store_url: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tasks: filtered, sorted, one page at a time."""
    statuses = _statuses(status)
    if sort not in SORTS:
        _fail(f"unknown sort {sort!r} (one of: {', '.join(SORTS)}; add --desc for descending)")
    order = ("-" if desc else "") + SORTS[sort]
    if url:
        page_size = min(page_size, 100)
        params: dict[str, Any] = {"page": page, "pageSize": page_size, "order": order}
        for key, value in (("type", class_name), ("executor", executor), ("q", search)):
            if value:
                params[key] = value
        if statuses:
            params["status"] = ",".join(s.value for s in statuses)
        found = _Api(url, token).call("GET", "/api/tasks", params=params)
        items, total = [_item(t) for t in found["items"]], found["total"]
    else:
        from skalds.backends.store.base import TaskQuery

        query = TaskQuery(
            statuses=statuses,
            class_name=class_name,
            executor=executor,
            search=search,
            order=order,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        stored = _store(store_url).list(query)
        items, total = [_item(t.to_json_dict()) for t in stored.items], stored.total
    if as_json:
        console.print_json(json.dumps(items))
        return
    pages = max(1, -(-total // page_size))
    first = (page - 1) * page_size + 1
    shown = f"{first}-{first + len(items) - 1} of {total}" if items else f"none of {total}"
    console.print(_table(items, f"tasks {shown} (page {page} of {pages}, by {sort}{' desc' if desc else ''})"))


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
    not_before: Annotated[
        str | None,
        typer.Option(
            "--not-before",
            help="Do not start it before this time: ms since the epoch, ISO 8601 (2026-01-01T12:00:00Z), "
            "or a duration from now (90s, 10m, 2h, 1d)",
            show_default=False,
        ),
    ] = None,
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
    if not_before is not None:
        body["notBefore"] = _time_ms(not_before, "--not-before", durations=True)
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


@task_app.command("deadline")
def task_deadline(
    task_id: str,
    at: Annotated[
        str | None,
        typer.Option("--at", help="ms since the epoch or ISO 8601 (2026-01-01T12:00:00Z)", show_default=False),
    ] = None,
    within: Annotated[
        str | None, typer.Option("--in", help="A duration from now: 90s, 10m, 2h, 1d, 1h30m", show_default=False)
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="No deadline")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set or clear a task's deadline (once it passes, a task not yet final is cancelled)."""
    if sum((at is not None, within is not None, clear)) != 1:
        _fail("give exactly one of --at TIME, --in DURATION (e.g. --in 10m) or --clear")
    deadline: int | None = None
    if at is not None:
        deadline = _time_ms(at, "--at")
    elif within is not None:
        span = _duration_ms(within)
        if span is None:
            _fail(f"--in: {within!r} is not {_DURATION_HELP}")
            raise AssertionError("unreachable")
        deadline = int(time.time() * 1000) + span
    api = _Api(_need_url(url), token)
    _show(_item(api.call("PUT", f"/api/tasks/{task_id}/deadline", json={"deadlineDateTime": deadline})), as_json)


@task_app.command("requirements")
def task_requirements(
    task_id: str,
    requires: Annotated[
        str | None,
        typer.Option(help="Resources one run uses: gpu=1,slots=2 ('' for none, whatever the class declares)"),
    ] = None,
    node_selector: Annotated[
        str | None,
        typer.Option("--node-selector", help="Labels a node must have: zone=eu-1 ('' for any node)"),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Both back to what the task's class declares")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change where a task may run. A waiting task is placed by them at once; one that runs is not
    moved (they apply the next time it is placed: a retry or a failover). What is not given is kept."""
    from skalds.model.resources import check_labels, check_resources

    body: dict[str, Any] = {}
    if clear:
        if requires is not None or node_selector is not None:
            _fail("--clear sets both back to the class's; give it alone, or --requires / --node-selector without it")
        body = {"requires": None, "nodeSelector": None}
    try:
        if requires is not None:
            body["requires"] = check_resources(requires, "--requires")
        if node_selector is not None:
            body["nodeSelector"] = check_labels(node_selector, "--node-selector")
    except ValueError as exc:
        _fail(str(exc))
    if not body:
        _fail("give --requires gpu=1, --node-selector zone=eu-1 (or both), or --clear")
    api = _Api(_need_url(url), token)
    _show(_item(api.call("PUT", f"/api/tasks/{task_id}/requirements", json=body)), as_json)


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Only show what would happen")]
IdsArgument = Annotated[
    list[str] | None, typer.Argument(help="Task id(s); or give a filter instead", show_default=False)
]
#: The single-task status each action sets (``PUT /api/tasks/{id}/status``).
_SINGLE_STATUS = {"cancel": "Cancelled", "pause": "Paused", "resume": "Created"}


def _act(
    action: str,
    task_ids: list[str] | None,
    filters: dict[str, str | None],
    *,
    yes: bool,
    dry_run: bool,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """One task through its own route, several (ids or a filter) through ``POST /api/tasks/bulk``."""
    api = _Api(_need_url(url), token)
    ids = list(dict.fromkeys(task_ids or []))
    given = {k: v for k, v in filters.items() if v}
    if ids and given:
        _fail("give task ids or a filter (--status, --class, --executor, --search), not both")
    if not ids and not given:
        _fail(f"give a task id, or a filter (--status, --class, --executor, --search) to {action} many tasks")
    if len(ids) == 1 and not dry_run:
        if action == "delete":
            if not yes:
                typer.confirm(f"Delete task {ids[0]}?", abort=True)
            api.call("DELETE", f"/api/tasks/{ids[0]}")
            if as_json:
                console.print_json(json.dumps({"id": ids[0], "deleted": True}))
            else:
                console.print(f"task {ids[0]} deleted")
            return
        item = api.call("PUT", f"/api/tasks/{ids[0]}/status", json={"status": _SINGLE_STATUS[action]})
        _show(_item(item), as_json)
        return
    if "status" in given:
        given["status"] = ",".join(s.value for s in _statuses(given["status"]) or ())
    which: dict[str, Any] = {"ids": ids} if ids else given

    def bulk(preview: bool) -> dict[str, Any]:
        return api.call("POST", "/api/tasks/bulk", json={"action": action, "filter": which, "dryRun": preview})

    preview = bulk(True)
    if dry_run or not preview["done"]:
        _bulk_report(preview, as_json)
        return
    if not yes:
        if not as_json:
            _bulk_report(preview, False)
        typer.confirm(f"{action.capitalize()} {preview['done']} task(s)?", abort=True)
    result = bulk(False)
    _bulk_report(result, as_json)
    if result["failed"]:
        raise typer.Exit(1)


def _bulk_report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(result))
        return
    dry = result["dryRun"]
    done = "would be done" if dry else "done"
    table = Table()
    for col in ("id", "status", "outcome", "reason"):
        table.add_column(col, no_wrap=col != "reason")
    style = {"done": "green", "skipped": "yellow", "failed": "red"}
    for i in result["items"]:
        outcome = i["outcome"]
        shown = done if outcome == "done" else outcome
        table.add_row(
            i["id"], _styled(i["status"]), f"[{style[outcome]}]{shown}[/{style[outcome]}]", i.get("reason") or ""
        )
    if result["items"]:
        console.print(table)
    console.print(
        f"{result['action']}{' (dry run)' if dry else ''}: {result['matched']} matched, "
        f"{result['done']} {done}, {result['skipped']} skipped, {result['failed']} failed",
        soft_wrap=True,
    )


def _status_command(action: str, help_text: str) -> None:
    def command(
        task_ids: IdsArgument = None,
        status: StatusOption = None,
        class_name: ClassOption = None,
        executor: ExecutorOption = None,
        search: SearchOption = None,
        yes: YesOption = False,
        dry_run: DryRunOption = False,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        filters = {"status": status, "type": class_name, "executor": executor, "q": search}
        _act(action, task_ids, filters, yes=yes, dry_run=dry_run, url=url, token=token, as_json=as_json)

    command.__doc__ = help_text
    task_app.command(action)(command)


_status_command("cancel", "Cancel tasks (their workers are stopped and released): one id, several, or a filter.")
_status_command(
    "pause", "Pause tasks: workers stop, nothing is dispatched until resumed. One id, several, or a filter."
)
_status_command(
    "resume",
    "Resume paused tasks (one id also runs a failed / cancelled / finished task again). One id, several, or a filter.",
)
_status_command(
    "delete", "Delete tasks (cancelled first), after a confirmation unless --yes. One id, several, or a filter."
)


@task_app.command("history")
def task_history(task_id: str, url: UrlOption = None, token: TokenOption = None, store_url: StoreOption = None,
                 as_json: JsonOption = False) -> None:  # fmt: skip
    """A task's status changes, oldest first (who, at which epoch, why)."""
    if url:
        items = _Api(url, token).call("GET", f"/api/tasks/{task_id}/history")["items"]
    else:
        task = _store(store_url).get(task_id)
        if task is None:
            _fail(f"no task with id {task_id!r}", 1)
        items = [
            {"timestamp": c.timestamp, "status": c.status.value, "executor": c.executor, "epoch": c.epoch,
             "detail": c.detail}
            for c in task.status_history
        ]  # fmt: skip
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table(title=f"task {task_id}: {len(items)} status change(s)")
    for col in ("time", "status", "executor", "epoch", "detail"):
        table.add_column(col, no_wrap=col != "detail")
    for c in items:
        table.add_row(_when(c["timestamp"]), _styled(c["status"]), c.get("executor") or "-", str(c.get("epoch", "-")),
                      c.get("detail") or "")  # fmt: skip
    console.print(table)


@task_app.command("logs")
def task_logs(
    task_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C or the task ends")
    ] = False,
    after: Annotated[int | None, typer.Option(min=0, help="Only lines after this seq")] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls with --follow")] = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line")] = False,
) -> None:
    """The log lines of a task's workers (the last 500 are kept), through a controller or the cache."""
    import time

    from skalds.model.task import FINAL_STATUSES

    read_page, read_status = _log_source(task_id, url, token)
    final = {s.value for s in FINAL_STATUSES}
    try:
        while True:
            ended = read_status() in final  # read before the lines: none can be missed after it
            page = read_page(after)
            for line in page["lines"]:
                _print_log_line(line, as_json)
            if page["lastSeq"] is not None:
                after = page["lastSeq"]
            if not follow or (ended and not page["lines"]):
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def _log_source(task_id: str, url: str | None, token: str | None) -> tuple[Any, Any]:
    """(read a page of log lines after a seq, read the task's status) through a controller or the
    configured store and cache."""
    if url:
        api = _Api(url, token)

        def api_page(after: int | None) -> dict[str, Any]:
            params = {"after": after} if after is not None else {}
            return api.call("GET", f"/api/tasks/{task_id}/logs", params=params)

        return api_page, lambda: api.call("GET", f"/api/tasks/{task_id}")["status"]
    from skalds.backends.clients import BackendClients
    from skalds.config.skald_config import SkaldConfig

    backends = BackendClients(SkaldConfig())
    try:
        task = backends.store.get(task_id)
    except SkaldsError as exc:
        _fail(str(exc))
        raise
    if task is None:
        _fail(f"no task with id {task_id!r}", 1)

    def status() -> str:
        current = backends.store.get(task_id)
        return current.lifecycle_status.value if current is not None else "Cancelled"  # deleted: nothing more comes

    return lambda after: backends.state.task_logs_page(task_id, after, 500), status


def _print_log_line(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return
    stamp = line.get("timestamp")
    when = datetime.fromtimestamp(stamp / 1000).strftime("%H:%M:%S.%f")[:-3] if isinstance(stamp, int | float) else "-"
    level = str(line.get("level") or "")
    style = {"ERROR": "red", "CRITICAL": "red", "WARNING": "yellow", "DEBUG": "dim"}.get(level, "")
    shown = f"[{style}]{level:<7}[/{style}]" if style else f"{level:<7}"
    console.print(f"{line.get('seq', '')!s:>5} {when} {shown} ", end="")
    console.print(str(line.get("message", "")), markup=False, highlight=False, soft_wrap=True)


__all__ = ["task_app"]
