"""Attachments are checked with the worker's own model semantics: the schema a skald advertises
lets a check accept exactly what the model accepts (field names as well as aliases) and refuse the
keys it would silently drop; a class no online skald runs yet is accepted with a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel, ConfigDict, Field

from skalds.errors import InvalidAttachments, UnknownWorkerClass
from skalds.model.attachments import attachments_schema, check_task, rename_keys
from tests.support.workers import Camera as MyWorker
from tests.support.workers import CameraModel as MyDataModel  # the README's model
from tests.support.workers import LooseModel as Loose


class Region(BaseModel):
    max_fps: int = Field(5, alias="maxFps")


class Nested(BaseModel):
    region: Region | None = None
    regions: list[Region] = []


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fix_frame: int = Field(1, alias="fixFrame")


def classes(**models: type[BaseModel]) -> dict[str, tuple[dict, list[str]]]:
    return {name: (attachments_schema(model), ["node-a"]) for name, model in models.items()}


def test_field_names_are_accepted_as_the_worker_accepts_them_and_stored_by_alias():
    # Given the README's model, which its worker validates by name and by alias
    fleet = classes(MyWorker=MyDataModel)
    for given in ({"rtsp_url": "rtsp://cam", "fix_frame": 3}, {"rtspUrl": "rtsp://cam", "fixFrame": 3}):
        # When attachments use either form
        checked = check_task("MyWorker", given, fleet)
        # Then they pass, keyed as the schema's properties (what forms and updates read)
        assert checked.attachments == {"rtspUrl": "rtsp://cam", "fixFrame": 3} and checked.warnings == []
        # And the worker's model reads them the same
        assert MyWorker.parse_attachments(checked.attachments) == MyWorker.parse_attachments(given)


def test_the_advertised_schema_stays_the_model_schema_by_alias():
    # Given the README's model
    schema = attachments_schema(MyDataModel)
    # Then forms still see the aliases as properties and required fields
    assert list(schema["properties"]) == ["rtspUrl", "fixFrame"] and schema["required"] == ["rtspUrl", "fixFrame"]
    # And two keywords say what the model also takes and what it does with other keys
    assert schema["x-skalds-keys"] == {"rtsp_url": "rtspUrl", "fix_frame": "fixFrame"}
    assert schema["x-skalds-extra"] == "ignore"


def test_a_key_the_model_would_drop_is_refused_naming_the_close_match():
    # Given the README's model (extra keys are ignored by pydantic: the worker would drop them)
    fleet = classes(MyWorker=MyDataModel)
    # When a key is misspelled
    with pytest.raises(InvalidAttachments) as err:
        check_task("MyWorker", {"rtspUrl": "rtsp://cam", "fixFrame": 1, "fixframe": 3}, fleet)
    # Then the error names the key and what was meant
    assert err.value.details == [
        {"field": "attachments.fixframe", "message": "unknown attachment 'fixframe' (did you mean 'fixFrame'?)"}
    ]
    assert "unknown attachment 'fixframe' (did you mean 'fixFrame'?)" in str(err.value)
    # And a key like nothing known lists what the model takes
    with pytest.raises(InvalidAttachments, match=r"'zzz' \(the model takes: fixFrame, rtspUrl\)"):
        check_task("MyWorker", {"rtspUrl": "rtsp://cam", "fixFrame": 1, "zzz": 3}, fleet)
    # And the same value under its name and its alias is refused (which one would count is unclear)
    with pytest.raises(InvalidAttachments, match="given twice, as 'rtspUrl' and 'rtsp_url'"):
        check_task("MyWorker", {"rtspUrl": "a", "rtsp_url": "b", "fixFrame": 1}, fleet)


def test_nested_models_are_checked_the_same_way():
    fleet = classes(N=Nested)
    checked = check_task("N", {"region": {"max_fps": 2}, "regions": [{"maxFps": 1}, {"max_fps": 3}]}, fleet)
    assert checked.attachments == {"region": {"maxFps": 2}, "regions": [{"maxFps": 1}, {"maxFps": 3}]}
    with pytest.raises(InvalidAttachments) as err:
        check_task("N", {"regions": [{"maxfps": 1}]}, fleet)
    assert err.value.details == [
        {
            "field": "attachments.regions.0.maxfps",
            "message": "unknown attachment 'regions.0.maxfps' (did you mean 'regions.0.maxFps'?)",
        }
    ]


def test_extra_allow_keeps_unknown_keys_and_extra_forbid_refuses_them():
    fleet = classes(Loose=Loose, Strict=Strict)
    assert check_task("Loose", {"fix_frame": 2, "anything": [1]}, fleet).attachments == {"fixFrame": 2, "anything": [1]}
    with pytest.raises(InvalidAttachments) as err:
        check_task("Strict", {"fixframe": 2}, fleet)
    # one detail for the key, not a second one from the schema's additionalProperties
    assert [d["field"] for d in err.value.details] == ["attachments.fixframe"]


def test_a_schema_without_the_keywords_is_checked_as_before():
    # Given a schema from a skald older than the keywords
    fleet = {"Old": ({"type": "object", "properties": {"n": {"type": "integer"}}}, ["old"])}
    # Then unknown keys pass (nothing says the model drops them) and the schema still holds
    assert check_task("Old", {"n": 1, "other": 2}, fleet).attachments == {"n": 1, "other": 2}
    with pytest.raises(InvalidAttachments):
        check_task("Old", {"n": "x"}, fleet)


def test_a_class_no_online_skald_runs_is_accepted_with_a_warning_unless_required():
    fleet = classes(MyWorker=MyDataModel)
    checked = check_task("MyWorkr", {"whatever": 1}, fleet)
    assert checked.attachments == {"whatever": 1}
    assert checked.warnings == [
        "no online skald runs class 'MyWorkr' (did you mean 'MyWorker'?); the task waits until one does, "
        "and its attachments could not be validated"
    ]
    with pytest.raises(UnknownWorkerClass, match="known classes: MyWorker"):
        check_task("MyWorkr", {}, fleet, require_class=True)


def test_an_update_merges_onto_the_stored_keys():
    schema = attachments_schema(MyDataModel)
    stored = rename_keys(schema, {"rtsp_url": "a", "fixFrame": 1})
    assert {**stored, **rename_keys(schema, {"rtsp_url": "b"})} == {"rtspUrl": "b", "fixFrame": 1}


def test_without_jsonschema_the_check_names_the_pip_command():
    # Given a Python where jsonschema cannot be imported
    code = (
        "import sys; sys.modules['jsonschema'] = None\n"
        "from skalds.model.attachments import check_task\n"
        "from skalds.errors import MissingDriver\n"
        "schema = {'type': 'object', 'properties': {'n': {'type': 'integer'}}}\n"
        "print(check_task('Waiting', {}, {}).warnings != [])\n"  # nothing to validate: no need
        "try:\n"
        "    check_task('C', {'n': 1}, {'C': (schema, ['a'])})\n"
        "except MissingDriver as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    # Then a task that waits needs no validation, and one that does says what to install
    assert out.splitlines()[0] == "True"
    assert "pip install 'skalds[controller]'" in out
