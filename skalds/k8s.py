"""Ship one YAML task to Kubernetes as its own single-process skald.

On a cluster the scheduler, not an edge skald, keeps a task alive: a persistent task becomes a
one-replica Deployment (restarted forever, never two copies during a rollout) and a one-shot
task a Job (retried a few times, then left failed). The task file travels in a ConfigMap, so
the pod runs exactly the entry that was reviewed, with its comments, and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from skalds.errors import ConfigError
from skalds.taskfile import YamlTaskEntry

#: Where the ConfigMap is mounted in the container, and the file name inside it.
CONFIG_DIR = "/etc/skalds"
TASK_FILE = "tasks.yml"
#: The longest DNS-1123 label Kubernetes accepts as an object name.
DNS1123_LABEL_MAX = 63
CONFIG_MAP_SUFFIX = "-tasks"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def dns1123_name(text: str, *, max_length: int = DNS1123_LABEL_MAX) -> str:
    """A valid DNS-1123 label derived from ``text`` (``TaskWorker1`` -> ``taskworker1``).

    Characters outside ``[a-z0-9-]`` become ``-``. A name that had to be shortened, or that
    has nothing usable left, gets a short hash of ``text`` so distinct ids stay distinct.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if name and len(name) <= max_length:
        return name
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    head = name[: max_length - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}" if head else f"task-{digest}"[:max_length]


def render_manifests(
    entry: YamlTaskEntry,
    *,
    image: str,
    yaml_text: str,
    module: str | None,
    namespace: str | None = None,
    backoff_limit: int = 3,
) -> str:
    """Kubernetes manifests (multi-document YAML) that run ``entry`` in its own pod.

    ``yaml_text`` is the task file the pod gets, normally
    :func:`skalds.taskfile.single_entry_yaml` of the entry. ``module`` is the Python
    module that defines the worker class (``--module``): the container then runs
    ``skalds run --module``. Without it the container runs the image's own entrypoint — a program
    that registers its classes and calls ``Skalds(SkaldConfig()).run()`` — with ``SKALD_MODE`` and
    ``YAML_FILE`` in its environment (a ``skalds run`` without a module could not find the class).
    Raises :class:`ConfigError` for an empty image or module, an invalid namespace or a negative
    ``backoff_limit``.
    """
    _check_options(image, module, namespace, backoff_limit)
    name = dns1123_name(entry.task_id, max_length=DNS1123_LABEL_MAX - len(CONFIG_MAP_SUFFIX))
    config_map_name = name + CONFIG_MAP_SUFFIX
    labels = _labels(name)
    # Task ids and class names need not be valid label values; annotations take any text.
    annotations = {"skalds/task-id": entry.task_id, "skalds/class-name": entry.class_name}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(config_map_name, namespace, labels, annotations),
        "data": {TASK_FILE: _block_text(yaml_text)},
    }
    template = {
        "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "spec": _pod_spec(entry, image, module, config_map_name),
    }
    metadata = _metadata(name, namespace, labels, annotations)
    if entry.is_persistent:
        workload = _deployment(metadata, labels, template)
    else:
        workload = _job(metadata, template, backoff_limit)
    return _dump_all([config_map, workload])


def _labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "skalds",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "task",
        "app.kubernetes.io/managed-by": "skalds",
    }


def _check_options(image: str, module: str | None, namespace: str | None, backoff_limit: int) -> None:
    if not image.strip():
        raise ConfigError("image: must name the container image that has skalds and the worker installed")
    if module is not None and not module.strip():
        raise ConfigError("module: must be a Python module name, or None")
    if namespace is not None and (len(namespace) > DNS1123_LABEL_MAX or not _DNS1123_LABEL.fullmatch(namespace)):
        raise ConfigError(f"namespace: {namespace!r} is not a valid DNS-1123 label")
    if backoff_limit < 0:
        raise ConfigError(f"backoff_limit: must be 0 or more, got {backoff_limit}")


def _pod_spec(entry: YamlTaskEntry, image: str, module: str | None, config_map_name: str) -> dict[str, Any]:
    """One container running the task file mounted from the ConfigMap."""
    container: dict[str, Any] = {"name": "skald", "image": image}
    if module is not None:
        # The image has skalds and the module: `skalds run` imports the module's worker classes.
        container["command"] = [
            *("skalds", "run", "--mode", "single_process", "--yaml", f"{CONFIG_DIR}/{TASK_FILE}"),
            *("--module", module),
        ]
    # Without a module the image's own entrypoint runs (a program that registers its classes and
    # calls Skalds(SkaldConfig()).run(), as in the README's example); these settings reach it
    # through the environment.
    container["env"] = [
        {"name": "SKALD_MODE", "value": "single_process"},
        {"name": "YAML_FILE", "value": f"{CONFIG_DIR}/{TASK_FILE}"},
    ]
    container["volumeMounts"] = [{"name": "tasks", "mountPath": CONFIG_DIR, "readOnly": True}]
    return {
        "restartPolicy": "Always" if entry.is_persistent else "Never",
        "containers": [container],
        "volumes": [{"name": "tasks", "configMap": {"name": config_map_name}}],
    }


def _deployment(metadata: dict[str, Any], labels: dict[str, str], template: dict[str, Any]) -> dict[str, Any]:
    """A persistent task: one replica, restarted forever."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            # A rolling update would run the old and the new pod side by side: one task twice.
            "strategy": {"type": "Recreate"},
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": labels["app.kubernetes.io/name"],
                    "app.kubernetes.io/instance": labels["app.kubernetes.io/instance"],
                }
            },
            "template": template,
        },
    }


def _job(metadata: dict[str, Any], template: dict[str, Any], backoff_limit: int) -> dict[str, Any]:
    """A one-shot task: retried ``backoff_limit`` times, then left failed."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {"backoffLimit": backoff_limit, "template": template},
    }


def _dump_all(documents: list[dict[str, Any]]) -> str:
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.explicit_start = True
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    return stream.getvalue()


def _metadata(name: str, namespace: str | None, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    metadata["annotations"] = dict(annotations)
    return metadata


def _block_text(text: str) -> str:
    """The file as a ``|`` block so it stays readable in the manifest (ruamel quotes it if it must)."""
    return LiteralScalarString(text) if text.endswith("\n") else text
