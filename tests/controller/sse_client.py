"""Read a Server-Sent Events stream in a background thread, stamping each event on arrival."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx


class SSEReader:
    """``events`` holds ``(arrival time.time(), event dict)``; ``comments`` the keep-alive lines."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.status_code: int | None = None
        self.ended = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None), **kwargs)
        self._response: httpx.Response | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "no response from the event stream"

    def _run(self, url: str) -> None:
        try:
            with self._client.stream("GET", url) as response:
                self._response = response
                self.status_code = response.status_code
                self._ready.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append((time.time(), json.loads(line[6:])))
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        finally:
            self._ready.set()
            self.ended.set()

    def of(self, kind: str, **match: Any) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, e) for t, e in list(self.events) if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
        ]

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(5)
