"""``skalds skald …``: the fleet from the command line, through a controller's REST API.

``list`` shows every known skald; ``cordon`` stops dispatch to a node skald (its tasks keep
running), ``drain`` cordons it and moves its tasks to other nodes, ``uncordon`` makes it
schedulable again (see ``skalds.controller.cordon``). The URL comes from ``--url`` or
``SKALDS_CONTROLLER_URL``, the token from ``SKALDS_API_TOKEN``.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from skalds.cli_tasks import JsonOption, TokenOption, UrlOption, console, err_console

skald_app = typer.Typer(
    help="Skalds: list, cordon / drain / uncordon a node skald (through a controller).", no_args_is_help=True
)


def _request(url: str | None, token: str | None, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One API call; its JSON answer, or an exit with the API's error message (code 1)."""
    import httpx

    if not url:
        err_console.print("[red]error:[/red] no controller: give --url or set SKALDS_CONTROLLER_URL")
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach the controller at {url}: {exc}")
        raise typer.Exit(1) from exc
    try:
        answer = response.json() if response.content else {}
    except ValueError:
        answer = {"error": {"code": response.status_code, "message": response.text[:500]}}
    if response.is_success:
        return dict(answer)
    error = answer.get("error") or {}
    lines = [f"{error.get('code', response.status_code)}: {error.get('message', '')}"]
    lines += [f"  {d.get('field', '')}: {d.get('message', d)}" for d in error.get("details") or []]
    err_console.print("[red]error:[/red] " + "\n".join(lines))
    raise typer.Exit(1)


def _state(item: dict[str, Any]) -> str:
    if item.get("draining"):
        return "[yellow]draining[/yellow]"
    return "[yellow]cordoned[/yellow]" if item.get("cordoned") else "schedulable"


def _schedule(skald_id: str, url: str | None, token: str | None, as_json: bool, **body: bool) -> None:
    item = _request(url, token, "PUT", f"/api/skalds/{skald_id}/schedulable", body)
    if as_json:
        console.print_json(json.dumps(item))
        return
    moved = item.get("drained") or []
    console.print(
        f"skald {skald_id}: {_state(item)}"
        + (f"; {len(moved)} task(s) moved to other nodes: {', '.join(moved)}" if moved else "")
    )


@skald_app.command("list")
def list_skalds(url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Every known skald: status, whether it takes tasks, its tasks."""
    items = _request(url, token, "GET", "/api/skalds").get("items", [])
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table(title=f"{len(items)} skald(s)")
    for col in ("id", "type", "status", "scheduling", "tasks", "classes"):
        table.add_column(col)
    for s in items:
        table.add_row(
            s["id"],
            s.get("type", "-"),
            s.get("status", "-"),
            _state(s) if s.get("type") == "node" else "-",
            str(s.get("taskCount", 0)),
            ", ".join(s.get("supportedTasks") or []),
        )
    console.print(table)


@skald_app.command()
def cordon(skald_id: str, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """No new tasks for this node skald; what it runs keeps running."""
    _schedule(skald_id, url, token, as_json, cordoned=True)


@skald_app.command()
def drain(skald_id: str, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Cordon this node skald and move its tasks to other nodes (each stops here first)."""
    _schedule(skald_id, url, token, as_json, cordoned=True, drain=True)


@skald_app.command()
def uncordon(skald_id: str, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Give this node skald tasks again."""
    _schedule(skald_id, url, token, as_json, cordoned=False)


__all__ = ["skald_app"]
