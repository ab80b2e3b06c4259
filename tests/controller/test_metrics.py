"""``/metrics``: Prometheus text that agrees with the API, from a registry of the app's own."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from skalds.controller.metrics import ControllerMetrics
from tests.controller.conftest import online
from tests.support.procs import wait_for


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_registries_are_per_app():
    # Given two apps' metrics in one process, Then neither clashes with nor sees the other
    first, second = ControllerMetrics(), ControllerMetrics()
    first.failovers.inc()
    assert first.registry.get_sample_value("skalds_failovers_total") == 1
    assert second.registry.get_sample_value("skalds_failovers_total") == 0


def test_metrics_agree_with_the_api(start_controller, start_skald):
    # Given a node skald, two running tasks and one that failed for good
    api = start_controller(TASK_WORKER_RETRY="0")
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    for task_id in ("m1", "m2"):
        api.create(id=task_id, className="Recorder")
    api.create(id="m3", className="Recorder", attachments={"duration": 0, "fail": True})
    wait_for(lambda: api.status_is("m1", "Running") and api.status_is("m2", "Running"), what="Running")
    wait_for(lambda: api.status_is("m3", "Failed"), what="m3 Failed")

    # When Prometheus scrapes
    response = api.http.get("/metrics")

    # Then it is the text format, and the task gauges match the API's counts
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    tasks = {(labels["status"], labels["class_name"]): value for labels, value in found["skalds_tasks"]}
    for status in ("Running", "Failed", "Created", "Finished"):
        total = api.http.get("/api/tasks", params={"status": status}).json()["total"]
        assert tasks.get((status, "Recorder"), 0) == total
    assert tasks[("Running", "Recorder")] == 2 and tasks[("Failed", "Recorder")] == 1

    # And the fleet gauge counts the online node
    fleet = {(labels["mode"], labels["status"]): value for labels, value in found["skalds_skalds"]}
    assert fleet == {("node", "online"): 1, ("node", "offline"): 0, ("edge", "online"): 0, ("edge", "offline"): 0}

    # And each task's first assignment was timed
    count = next(v for _, v in found["skalds_dispatch_latency_seconds_count"])
    latency_sum = next(v for _, v in found["skalds_dispatch_latency_seconds_sum"])
    assert count == 3 and 0 <= latency_sum < 3

    # And requests are counted by route template and status, and the failover counter exists
    requests = {(k["method"], k["route"], k["status"]): v for k, v in found["skalds_http_requests_total"]}
    assert requests[("POST", "/api/tasks", "201")] == 3
    assert requests[("GET", "/api/tasks/{task_id}", "200")] >= 3
    assert found["skalds_failovers_total"] == [({}, 0.0)]

    # And the events it published (one assign per task) and the status changes it read are counted
    published = {(k["topic"], k["result"]): v for k, v in found["skalds_events_published_total"]}
    assert published[("task.assign", "ok")] == 3

    def consumed() -> dict[str, float]:
        return {k["kind"]: v for k, v in samples(api.http.get("/metrics").text).get("skalds_events_consumed_total", [])}

    # (m3 may have been created, run and failed between two of the controller's looks: still counted)
    wait_for(lambda: consumed().get("failed") == 1 and consumed().get("running", 0) >= 2, what="changes counted")
    assert consumed().get("created", 0) == 3


def test_a_running_tasks_cpu_and_memory_in_the_api_and_the_metrics(start_controller, start_skald, events):
    # Given a running task on a node
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="use", className="Recorder", attachments={"duration": 60})
    pid = wait_for(lambda: events("use", "main"), what="running")[0]["pid"]
    # Then its item carries its worker's usage, with a CPU rate once sampled twice
    usage = wait_for(
        lambda: (api.task("use").get("usage") or {}).get("cpuPercent") is not None and api.task("use")["usage"],
        timeout=15,
        what="usage in the task item",
    )
    with open(f"/proc/{pid}/statm") as fh:
        rss = int(fh.read().split()[1]) * 4096
    assert 0.5 * rss < usage["memoryBytes"] < 2 * rss

    # And /metrics has the same process's gauges, labelled by task
    def gauges() -> dict[str, float]:
        found = samples(api.http.get("/metrics").text)
        return {
            name: value
            for name in ("skalds_task_cpu_percent", "skalds_task_memory_bytes")
            for labels, value in found.get(name, [])
            if labels.get("task_id") == "use" and labels.get("class_name") == "Recorder"
        }

    got = wait_for(lambda: len(gauges()) == 2 and gauges(), timeout=10, what="usage gauges")
    assert 0.5 * rss < got["skalds_task_memory_bytes"] < 2 * rss
    api.set_status("use", "Cancelled")
