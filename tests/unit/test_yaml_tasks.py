"""The YAML task file: loading with precise errors, write-back that keeps the file as written."""

from __future__ import annotations

import os
import resource
import stat
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ruamel.yaml import YAML

from skalds.errors import TaskSourceError
from skalds.model.task import ModeEnum
from skalds.taskfile import (
    YamlTaskEntry,
    file_signature,
    load_task_file,
    single_entry_yaml,
    write_back_attachments,
)


class Zone(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    label: str
    max_count: int = Field(1, alias="maxCount")


class MyDataModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    rtsp_url: str = Field(..., alias="rtspUrl")
    fix_frame: int = Field(10, alias="fixFrame")
    zones: list[Zone] = []


class OtherModel(BaseModel):
    count: int = 0


class ExplodingModel(BaseModel):
    value: int = 0

    @model_validator(mode="after")
    def _explode(self) -> ExplodingModel:
        raise RuntimeError("boom")


MODELS: dict[str, type[BaseModel]] = {"MyWorker": MyDataModel, "OtherWorker": OtherModel}

EXAMPLE = """\
TaskWorkers:
  TaskWorker1:
    isPersistent: true
    attachments:
      fixFrame: 30
      rtspUrl: rtsp://192.168.1.1/camera1
    className: MyWorker
"""


def write(tmp_path: Path, text: str, name: str = "tasks.yml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def only_error(errors: list[TaskSourceError]) -> str:
    assert len(errors) == 1, [str(e) for e in errors]
    return str(errors[0])


# ------------------------------------------------------------------------------------------
# Loading: valid files


def test_loads_the_documented_example_by_alias(tmp_path: Path) -> None:
    # Given the example file from the documentation
    path = write(tmp_path, EXAMPLE)

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then the one entry is there, attachments validated and dumped by alias
    assert errors == []
    assert entries == {
        "TaskWorker1": YamlTaskEntry(
            task_id="TaskWorker1",
            class_name="MyWorker",
            attachments={"rtspUrl": "rtsp://192.168.1.1/camera1", "fixFrame": 30, "zones": []},
            is_persistent=True,
            name=None,
            description=None,
            priority=0,
            dependencies=None,
            line=2,
        )
    }


def test_attachments_written_by_field_name_are_dumped_by_alias(tmp_path: Path) -> None:
    # Given attachments spelled with the model's field names, nested ones included
    path = write(
        tmp_path,
        """\
TaskWorkers:
  cam:
    className: MyWorker
    attachments:
      rtsp_url: rtsp://cam
      fix_frame: 5
      zones:
        - label: door
          max_count: 3
""",
    )

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then the attachments come back by alias
    assert errors == []
    assert entries["cam"].attachments == {
        "rtspUrl": "rtsp://cam",
        "fixFrame": 5,
        "zones": [{"label": "door", "maxCount": 3}],
    }
    assert entries["cam"].is_persistent is False


def test_optional_keys_are_loaded_and_carried_into_the_task(tmp_path: Path) -> None:
    # Given an entry with every optional key
    path = write(
        tmp_path,
        """\
TaskWorkers:
  TaskWorker1:
    className: MyWorker
    name: Front door
    description: Counts people at the front door
    priority: 7
    dependencies: [TaskWorker0]
    isPersistent: false
    attachments: {rtspUrl: rtsp://cam}
""",
    )

    # When it is loaded and turned into a task
    entries, errors = load_task_file(path, MODELS)
    task = entries["TaskWorker1"].to_task("edge-1", ModeEnum.ACTIVE)

    # Then every value reaches the task record, which comes from YAML
    assert errors == []
    assert task.id == "TaskWorker1"
    assert task.class_name == "MyWorker"
    assert task.source == "YAML"
    assert task.executor == "edge-1"
    assert task.mode is ModeEnum.ACTIVE
    assert task.name == "Front door"
    assert task.description == "Counts people at the front door"
    assert task.priority == 7
    assert task.dependencies == ["TaskWorker0"]
    assert task.is_persistent is False
    assert task.attachments == {"rtspUrl": "rtsp://cam", "fixFrame": 10, "zones": []}


def test_task_attachments_are_a_copy_of_the_entry(tmp_path: Path) -> None:
    # Given a loaded entry
    entries, _ = load_task_file(write(tmp_path, EXAMPLE), MODELS)
    entry = entries["TaskWorker1"]

    # When the task's attachments are changed
    task = entry.to_task("edge-1", ModeEnum.PASSIVE)
    task.attachments["fixFrame"] = 99

    # Then the entry is not affected
    assert entry.attachments["fixFrame"] == 30


def test_empty_task_workers_is_a_valid_empty_file(tmp_path: Path) -> None:
    # Given a file whose entries are all commented out
    path = write(tmp_path, "TaskWorkers:\n#  TaskWorker1:\n#    className: MyWorker\n")

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then there is nothing to run and nothing wrong
    assert entries == {}
    assert errors == []


# ------------------------------------------------------------------------------------------
# Loading: whole-file problems


def test_missing_file_gives_one_error(tmp_path: Path) -> None:
    # Given a path with no file
    path = tmp_path / "absent.yml"

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then there is one error naming the file
    assert entries == {}
    message = only_error(errors)
    assert "absent.yml" in message
    assert "not found" in message


def test_yaml_that_does_not_parse_gives_line_and_column(tmp_path: Path) -> None:
    # Given a file with an unclosed flow sequence on line 4
    path = write(
        tmp_path,
        """\
TaskWorkers:
  TaskWorker1:
    className: MyWorker
    dependencies: [a, b
    priority: 1
""",
    )

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then one error gives the file, the line and the column of the problem, for no task
    assert entries == {}
    message = only_error(errors)
    assert errors[0].task_id is None
    assert errors[0].line == 5
    assert "tasks.yml" in message
    assert "line 5" in message
    assert "column" in message
    assert "not valid YAML" in message


def test_duplicate_task_id_is_a_parse_error_with_its_line(tmp_path: Path) -> None:
    # Given the same task id twice
    path = write(
        tmp_path,
        """\
TaskWorkers:
  TaskWorker1:
    className: MyWorker
  TaskWorker1:
    className: OtherWorker
""",
    )

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then the duplicate is reported at its line
    assert entries == {}
    message = only_error(errors)
    assert "tasks.yml" in message
    assert "line 4" in message
    assert "TaskWorker1" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("- TaskWorker1\n", "top level must be a mapping"),
        ("taskWorkers:\n  a:\n    className: MyWorker\n", "found 'taskWorkers': misspelt?"),
        ("Other: 1\n", "no top-level 'TaskWorkers' key"),
    ],
)
def test_top_level_that_is_not_a_task_workers_mapping(tmp_path: Path, text: str, expected: str) -> None:
    # Given a file without a usable top-level TaskWorkers mapping
    path = write(tmp_path, text)

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then there is one error that says what is wrong
    assert entries == {}
    message = only_error(errors)
    assert "tasks.yml" in message
    assert expected in message


def test_task_workers_that_is_not_a_mapping(tmp_path: Path) -> None:
    # Given TaskWorkers written as a list on line 2
    path = write(tmp_path, "# tasks\nTaskWorkers:\n  - TaskWorker1\n")

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then the error names TaskWorkers and its line
    assert entries == {}
    message = only_error(errors)
    assert "tasks.yml, line 2" in message
    assert "'TaskWorkers' must be a mapping" in message


# ------------------------------------------------------------------------------------------
# Loading: entry problems (each leaves the other entries alone)

GOOD_ENTRY = """\
  Good:
    className: MyWorker
    attachments:
      rtspUrl: rtsp://good
"""


def load_with_bad_entry(tmp_path: Path, bad: str) -> tuple[dict[str, YamlTaskEntry], str]:
    """Load a file whose first entry is ``bad`` (starting on line 2) followed by a good one."""
    path = write(tmp_path, "TaskWorkers:\n" + bad + GOOD_ENTRY)
    entries, errors = load_task_file(path, MODELS)
    assert list(entries) == ["Good"], "a bad entry must not prevent the others"
    message = only_error(errors)
    assert errors[0].task_id is not None, "an entry's error names its task, so the others still apply"
    assert f"line {errors[0].line}:" in message
    return entries, message


def test_entry_that_is_not_a_mapping(tmp_path: Path) -> None:
    # Given an entry written as a plain string
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  Bad: MyWorker\n")

    # Then the error names the file, the task and the line
    assert "tasks.yml, line 2" in message
    assert "task 'Bad'" in message
    assert "must be a mapping" in message


def test_task_id_that_is_not_a_string(tmp_path: Path) -> None:
    # Given a task id that YAML reads as a number
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  123:\n    className: MyWorker\n")

    # Then the id is reported with its line
    assert "tasks.yml, line 2" in message
    assert "task '123'" in message
    assert "non-empty string" in message


def test_missing_class_name(tmp_path: Path) -> None:
    # Given an entry without className
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  Bad:\n    attachments: {rtspUrl: x}\n")

    # Then the error names the task and the field, at the entry's line
    assert "tasks.yml, line 2" in message
    assert "task 'Bad'" in message
    assert "field 'className'" in message
    assert "missing" in message


def test_empty_class_name(tmp_path: Path) -> None:
    # Given an entry whose className is empty
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  Bad:\n    isPersistent: false\n    className: ''\n")

    # Then the error points at the className line
    assert "tasks.yml, line 4" in message
    assert "task 'Bad'" in message
    assert "field 'className'" in message
    assert "non-empty string" in message


def test_unknown_class_name_lists_registered_classes(tmp_path: Path) -> None:
    # Given an entry naming a class nobody registered
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  Bad:\n    className: NoSuchWorker\n")

    # Then the error names it and lists what is registered
    assert "tasks.yml, line 3" in message
    assert "task 'Bad'" in message
    assert "field 'className'" in message
    assert "'NoSuchWorker'" in message
    assert "registered: MyWorker, OtherWorker" in message


def test_attachments_that_are_not_a_mapping(tmp_path: Path) -> None:
    # Given attachments written as a list
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  Bad:\n    className: MyWorker\n    attachments: [1, 2]\n")

    # Then the error points at the attachments line
    assert "tasks.yml, line 4" in message
    assert "task 'Bad'" in message
    assert "field 'attachments'" in message
    assert "must be a mapping" in message


def test_attachments_failing_validation_list_each_error_with_its_line(tmp_path: Path) -> None:
    # Given attachments with a bad value (line 6) and a missing required field
    bad = """\
  Bad:
    className: MyWorker
    attachments:
      zones: []
      fixFrame: thirty
"""
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, bad)

    # Then one error lists each pydantic error, by alias, with the line of its key
    assert "tasks.yml, line 4" in message
    assert "task 'Bad'" in message
    assert "field 'attachments'" in message
    assert "do not validate against MyDataModel (2 errors)" in message
    assert "line 6: fixFrame: Input should be a valid integer" in message
    assert "'thirty'" in message
    assert "line 4: rtspUrl: Field required" in message


def test_attachment_errors_by_field_name_are_reported_by_alias_at_their_line(tmp_path: Path) -> None:
    # Given attachments written by field name, with a bad nested value on line 11
    bad = """\
  Bad:
    className: MyWorker
    attachments:
      rtsp_url: rtsp://cam
      fix_frame: 2
      zones:
        - label: door
          max_count: 1
        - label: window
          max_count: many
"""
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, bad)

    # Then the path is spelled by alias and the line is the nested key's
    assert "do not validate against MyDataModel (1 error)" in message
    assert "line 11: zones.1.maxCount: Input should be a valid integer" in message


def test_validator_raising_something_else_is_still_reported(tmp_path: Path) -> None:
    # Given a model whose validator raises a plain RuntimeError
    path = write(tmp_path, "TaskWorkers:\n  Bad:\n    className: Boom\n    attachments: {value: 1}\n" + GOOD_ENTRY)

    # When the file is loaded
    entries, errors = load_task_file(path, {**MODELS, "Boom": ExplodingModel})

    # Then it is an error for that entry, not an exception
    assert list(entries) == ["Good"]
    message = only_error(errors)
    assert "task 'Bad'" in message
    assert "field 'attachments'" in message
    assert "RuntimeError: boom" in message


@pytest.mark.parametrize("value", ["yes", "1", "'true'"])
def test_is_persistent_that_is_not_a_bool(tmp_path: Path, value: str) -> None:
    # Given isPersistent that is not true or false
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, f"  Bad:\n    className: OtherWorker\n    isPersistent: {value}\n")

    # Then the error points at the isPersistent line
    assert "tasks.yml, line 4" in message
    assert "task 'Bad'" in message
    assert "field 'isPersistent'" in message
    assert "must be true or false" in message


@pytest.mark.parametrize("value", ["11", "-1", "high", "true", "2.5"])
def test_priority_out_of_range(tmp_path: Path, value: str) -> None:
    # Given a priority outside 0..10 or not an integer
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, f"  Bad:\n    className: OtherWorker\n    priority: {value}\n")

    # Then the error points at the priority line
    assert "tasks.yml, line 4" in message
    assert "task 'Bad'" in message
    assert "field 'priority'" in message
    assert "integer from 0 to 10" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("name", "[a]", "must be a string"),
        ("description", "{a: 1}", "must be a string"),
        ("dependencies", "TaskWorker0", "must be a list of task ids"),
        ("dependencies", "[1, 2]", "must be a list of task ids"),
    ],
)
def test_optional_keys_of_the_wrong_type(tmp_path: Path, key: str, value: str, expected: str) -> None:
    # Given an optional key with a value of the wrong type
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, f"  Bad:\n    className: OtherWorker\n    {key}: {value}\n")

    # Then the error names the key and its line
    assert "tasks.yml, line 4" in message
    assert f"field '{key}'" in message
    assert expected in message


def test_unknown_key_is_reported_as_a_likely_typo(tmp_path: Path) -> None:
    # Given a misspelt key on line 4
    # When the file is loaded
    _, message = load_with_bad_entry(tmp_path, "  Bad:\n    className: OtherWorker\n    priorty: 3\n")

    # Then the error names the key, suggests the right one and gives the line, also as attributes
    assert "tasks.yml, line 4" in message
    assert "task 'Bad'" in message
    assert "field 'priorty'" in message
    assert "unknown key (did you mean 'priority'?)" in message


def test_every_problem_of_an_entry_is_reported(tmp_path: Path) -> None:
    # Given one entry with three separate problems
    path = write(
        tmp_path,
        """\
TaskWorkers:
  Bad:
    className: OtherWorker
    isPersistant: true
    priority: 12
    attachments: 5
""",
    )

    # When it is loaded
    entries, errors = load_task_file(path, MODELS)

    # Then there is one error per problem, each at its own line
    assert entries == {}
    assert sorted((e.task_id, e.field, e.line) for e in errors) == [
        ("Bad", "attachments", 6),
        ("Bad", "isPersistant", 4),
        ("Bad", "priority", 5),
    ]
    messages = sorted(str(e) for e in errors)
    assert len(messages) == 3
    assert "line 4: task 'Bad', field 'isPersistant'" in messages[0]
    assert "line 5: task 'Bad', field 'priority'" in messages[1]
    assert "line 6: task 'Bad', field 'attachments'" in messages[2]


# ------------------------------------------------------------------------------------------
# Write-back

COMMENTED = """\
# Cameras of the north gate.
TaskWorkers:
  TaskWorker1:   # main camera
    isPersistent: true
    attachments:
      fixFrame: 30    # frames per second
      rtspUrl: 'rtsp://192.168.1.1/camera1'

    # the worker that counts people
    className: MyWorker

  # spare camera
  TaskWorker2:
    className: MyWorker
    attachments: {rtspUrl: "rtsp://192.168.1.2/camera2", fixFrame: 5}
"""


def test_write_back_changes_values_in_place_and_keeps_everything_else(tmp_path: Path) -> None:
    # Given a commented file
    path = write(tmp_path, COMMENTED)

    # When two existing attachment values change
    changed = write_back_attachments(path, "TaskWorker1", {"fixFrame": 25, "rtspUrl": "rtsp://192.168.1.9/camera1"})

    # Then only those values differ; comments, blank lines, order and quoting are as written
    assert changed is True
    assert path.read_text() == COMMENTED.replace("fixFrame: 30 ", "fixFrame: 25 ").replace(
        "'rtsp://192.168.1.1/camera1'", "'rtsp://192.168.1.9/camera1'"
    )


def test_write_back_appends_new_keys_before_the_following_comments(tmp_path: Path) -> None:
    # Given a commented file
    path = write(tmp_path, COMMENTED)

    # When a key that is not in the file is written back, with one that is unchanged
    changed = write_back_attachments(path, "TaskWorker1", {"fixFrame": 30, "lastSeen": "2024-05-01"})

    # Then the new key ends the attachments, above the blank line and comment that followed them
    assert changed is True
    assert path.read_text() == COMMENTED.replace(
        "      rtspUrl: 'rtsp://192.168.1.1/camera1'\n",
        "      rtspUrl: 'rtsp://192.168.1.1/camera1'\n      lastSeen: '2024-05-01'\n",
    )


def test_write_back_into_a_flow_mapping_keeps_its_style(tmp_path: Path) -> None:
    # Given a task whose attachments are a flow mapping
    path = write(tmp_path, COMMENTED)

    # When one value changes and one is added
    changed = write_back_attachments(path, "TaskWorker2", {"fixFrame": 6, "zones": []})

    # Then the flow mapping is updated where it stands
    assert changed is True
    assert path.read_text() == COMMENTED.replace(
        '{rtspUrl: "rtsp://192.168.1.2/camera2", fixFrame: 5}',
        '{rtspUrl: "rtsp://192.168.1.2/camera2", fixFrame: 6, zones: []}',
    )


def test_write_back_is_partial(tmp_path: Path) -> None:
    # Given an entry with two attachment keys
    path = write(tmp_path, COMMENTED)

    # When only one key is written back
    write_back_attachments(path, "TaskWorker1", {"fixFrame": 12})

    # Then the other key is still there and the file still loads
    entries, errors = load_task_file(path, MODELS)
    assert errors == []
    assert entries["TaskWorker1"].attachments["rtspUrl"] == "rtsp://192.168.1.1/camera1"
    assert entries["TaskWorker1"].attachments["fixFrame"] == 12


def test_write_back_of_an_unknown_task_id_leaves_the_file_alone(tmp_path: Path) -> None:
    # Given a file and its signature
    path = write(tmp_path, COMMENTED)
    before = file_signature(path)

    # When attachments of a task that is not in the file are written back
    changed = write_back_attachments(path, "NoSuchTask", {"fixFrame": 1})

    # Then nothing is written
    assert changed is False
    assert path.read_bytes() == COMMENTED.encode()
    assert file_signature(path) == before


def test_write_back_without_a_change_leaves_the_file_alone(tmp_path: Path) -> None:
    # Given a file and its signature
    path = write(tmp_path, COMMENTED)
    before = file_signature(path)

    # When the values written back are the ones already there
    changed = write_back_attachments(path, "TaskWorker1", {"fixFrame": 30, "rtspUrl": "rtsp://192.168.1.1/camera1"})

    # Then nothing is written
    assert changed is False
    assert file_signature(path) == before


def test_write_back_tells_true_from_one(tmp_path: Path) -> None:
    # Given an attachment whose value is the integer 1
    path = write(tmp_path, "TaskWorkers:\n  T:\n    className: X\n    attachments:\n      flag: 1\n")

    # When it is written back as true
    changed = write_back_attachments(path, "T", {"flag": True})

    # Then that is a change
    assert changed is True
    assert path.read_text() == "TaskWorkers:\n  T:\n    className: X\n    attachments:\n      flag: true\n"


def test_write_back_is_atomic_and_keeps_the_file_mode(tmp_path: Path) -> None:
    # Given a file readable by its group only
    path = write(tmp_path, COMMENTED)
    os.chmod(path, 0o640)
    before = file_signature(path)
    assert before is not None

    # When attachments are written back
    assert write_back_attachments(path, "TaskWorker1", {"fixFrame": 1})

    # Then the file was replaced (new inode), keeps its mode, and no temporary file is left
    after = file_signature(path)
    assert after is not None
    assert after != before
    assert after[2] != before[2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.yml"]


def test_write_back_follows_a_symlink(tmp_path: Path) -> None:
    # Given the task file reached through a symbolic link
    real = write(tmp_path, COMMENTED, name="real.yml")
    link = tmp_path / "tasks.yml"
    link.symlink_to(real)

    # When attachments are written back through the link
    assert write_back_attachments(link, "TaskWorker1", {"fixFrame": 2})

    # Then the link is still a link and the real file changed
    assert link.is_symlink()
    assert "fixFrame: 2 " in real.read_text()


def test_write_back_by_field_name_with_the_model_updates_the_written_spelling(tmp_path: Path) -> None:
    # Given attachments written by field name
    text = "TaskWorkers:\n  T:\n    className: MyWorker\n    attachments:\n      fix_frame: 3\n"
    path = write(tmp_path, text)

    # When the new value is given by alias, with the model
    changed = write_back_attachments(path, "T", {"fixFrame": 4}, model=MyDataModel)

    # Then the key as written gets the value, no second spelling is added
    assert changed is True
    assert path.read_text() == text.replace("fix_frame: 3", "fix_frame: 4")


def test_write_back_keeps_unusual_layout_elsewhere_byte_for_byte(tmp_path: Path) -> None:
    # Given a file with a document marker, aligned values and deeper indentation in one entry
    text = """\
---
TaskWorkers:
  A:
    className:    MyWorker
    attachments:
      rtspUrl:    rtsp://a
      zones:
          - label: door
            maxCount: 1
          - label: gate
  B:
      className: MyWorker
      attachments:
          rtspUrl: rtsp://b
          fixFrame: 1
"""
    path = write(tmp_path, text)

    # When values change in both entries, a list shrinks and a key is added
    assert write_back_attachments(path, "A", {"zones": [{"label": "door", "maxCount": 2}]})
    assert write_back_attachments(path, "B", {"fixFrame": 2, "zones": [{"label": "hall"}]})

    # Then only those lines changed, each at the indentation used around it
    assert (
        path.read_text()
        == """\
---
TaskWorkers:
  A:
    className:    MyWorker
    attachments:
      rtspUrl:    rtsp://a
      zones:
          - label: door
            maxCount: 2
  B:
      className: MyWorker
      attachments:
          rtspUrl: rtsp://b
          fixFrame: 2
          zones:
          - label: hall
"""
    )
    entries, errors = load_task_file(path, MODELS)
    assert errors == []
    assert entries["B"].attachments["zones"] == [{"label": "hall", "maxCount": 1}]


def test_write_back_keeps_crlf_line_ends(tmp_path: Path) -> None:
    # Given a file with Windows line ends
    path = write(tmp_path, EXAMPLE.replace("\n", "\r\n"))

    # When a value is written back
    assert write_back_attachments(path, "TaskWorker1", {"fixFrame": 15})

    # Then every line still ends in CRLF
    assert path.read_bytes() == EXAMPLE.replace("fixFrame: 30", "fixFrame: 15").replace("\n", "\r\n").encode()


def test_write_back_adds_attachments_to_an_entry_without_them(tmp_path: Path) -> None:
    # Given an entry with no attachments, followed by another entry
    text = "TaskWorkers:\n  A:\n    className: OtherWorker\n\n  B:\n    className: OtherWorker\n"
    path = write(tmp_path, text)

    # When attachments are written back
    assert write_back_attachments(path, "A", {"count": 3})

    # Then they are appended to the entry, before the blank line
    assert path.read_text() == (
        "TaskWorkers:\n  A:\n    className: OtherWorker\n    attachments:\n      count: 3\n\n"
        "  B:\n    className: OtherWorker\n"
    )


def test_write_back_into_a_broken_file_raises(tmp_path: Path) -> None:
    # Given a file that does not parse
    path = write(tmp_path, "TaskWorkers:\n  A: [\n")

    # When attachments are written back
    # Then a TaskSourceError names the file and the file is unchanged
    with pytest.raises(TaskSourceError, match=r"tasks\.yml"):
        write_back_attachments(path, "A", {"count": 1})
    assert path.read_text() == "TaskWorkers:\n  A: [\n"


def test_write_back_into_attachments_that_are_not_a_mapping_raises(tmp_path: Path) -> None:
    # Given attachments written as a list
    path = write(tmp_path, "TaskWorkers:\n  A:\n    className: X\n    attachments: [1]\n")

    # When attachments are written back
    # Then a TaskSourceError names the task, the field and the line
    with pytest.raises(TaskSourceError, match=r"line 4: task 'A', field 'attachments'"):
        write_back_attachments(path, "A", {"count": 1})


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    max_leaves=6,
)
UPDATES = st.dictionaries(st.sampled_from(["fixFrame", "rtspUrl", "zones", "new key"]), JSON_VALUES, max_size=4)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(updates=st.lists(st.tuples(st.sampled_from(["TaskWorker1", "TaskWorker2"]), UPDATES), max_size=3))
def test_write_back_stores_any_json_values_and_touches_nothing_else(
    tmp_path_factory: pytest.TempPathFactory, updates: list[tuple[str, dict[str, Any]]]
) -> None:
    # Given the commented file
    path = write(tmp_path_factory.mktemp("prop"), COMMENTED)
    for task_id, attachments in updates:
        before = path.read_text()

        # When any JSON values are written back
        try:
            write_back_attachments(path, task_id, attachments)
        except TaskSourceError:
            # Then a refusal leaves the file as it was
            assert path.read_text() == before
            continue

        # Then they read back as given, and the other entry and the comments are untouched
        text = path.read_text()
        stored = YAML(typ="rt").load(text)["TaskWorkers"][task_id]["attachments"]
        for key, value in attachments.items():
            assert stored[key] == value
        if task_id == "TaskWorker1":
            assert text.endswith(before[before.index("  # spare camera") :])
        else:
            assert text.startswith(before[: before.index("  TaskWorker2:")])
        assert "    # the worker that counts people\n    className: MyWorker\n\n  # spare camera\n" in text


# ------------------------------------------------------------------------------------------
# Signature


def test_file_signature_notices_a_replacement_and_a_missing_file(tmp_path: Path) -> None:
    # Given a file and its signature
    path = write(tmp_path, COMMENTED)
    before = file_signature(path)

    # When the file is written back, then removed
    write_back_attachments(path, "TaskWorker1", {"fixFrame": 31})
    after_write = file_signature(path)
    path.unlink()

    # Then each step is seen, and a missing file has no signature
    assert before is not None
    assert after_write is not None
    assert after_write != before
    assert file_signature(path) is None


# ------------------------------------------------------------------------------------------
# Single entry


def test_single_entry_keeps_its_heading_and_comments(tmp_path: Path) -> None:
    # Given a file of several entries, the second with a heading comment
    path = write(
        tmp_path,
        COMMENTED
        + """\

  # third camera
  TaskWorker3:
    className: OtherWorker   # counts cars
""",
    )

    # When the second entry is extracted
    text = single_entry_yaml(path, "TaskWorker2")

    # Then it stands alone under TaskWorkers, with its comment
    assert text == (
        "TaskWorkers:\n"
        "  # spare camera\n"
        "  TaskWorker2:\n"
        "    className: MyWorker\n"
        '    attachments: {rtspUrl: "rtsp://192.168.1.2/camera2", fixFrame: 5}\n'
    )


def test_single_entry_of_the_first_entry_drops_the_next_heading(tmp_path: Path) -> None:
    # Given the commented file
    path = write(tmp_path, COMMENTED)

    # When the first entry is extracted
    text = single_entry_yaml(path, "TaskWorker1")

    # Then its inner comments stay and the next entry's heading does not
    assert text == (
        "TaskWorkers:\n"
        "  TaskWorker1:   # main camera\n"
        "    isPersistent: true\n"
        "    attachments:\n"
        "      fixFrame: 30    # frames per second\n"
        "      rtspUrl: 'rtsp://192.168.1.1/camera1'\n"
        "\n"
        "    # the worker that counts people\n"
        "    className: MyWorker\n"
    )


def test_single_entry_loads_back_as_the_same_entry(tmp_path: Path) -> None:
    # Given a file with other top-level keys after TaskWorkers
    path = write(tmp_path, COMMENTED + "Settings:\n  verbose: true\n")
    entries, _ = load_task_file(path, MODELS)

    # When the last entry is extracted and loaded on its own
    single = write(tmp_path, single_entry_yaml(path, "TaskWorker2"), name="single.yml")
    alone, errors = load_task_file(single, MODELS)

    # Then it is the same entry and the only one
    assert errors == []
    assert list(alone) == ["TaskWorker2"]
    assert alone["TaskWorker2"].attachments == entries["TaskWorker2"].attachments
    assert "Settings" not in single.read_text()


def test_single_entry_resolves_an_anchor_defined_elsewhere(tmp_path: Path) -> None:
    # Given an entry that reuses another entry's attachments through an alias
    path = write(
        tmp_path,
        """\
TaskWorkers:
  A:
    className: MyWorker
    attachments: &cam {rtspUrl: rtsp://shared}
  B:
    className: MyWorker
    attachments: *cam
""",
    )

    # When the entry with the alias is extracted
    single = write(tmp_path, single_entry_yaml(path, "B"), name="single.yml")

    # Then it still carries the attachments
    alone, errors = load_task_file(single, MODELS)
    assert errors == []
    assert alone["B"].attachments["rtspUrl"] == "rtsp://shared"


def test_single_entry_of_an_unknown_task_raises(tmp_path: Path) -> None:
    # Given a file without the task
    path = write(tmp_path, EXAMPLE)

    # When it is extracted
    # Then a TaskSourceError names the file and the task
    with pytest.raises(TaskSourceError, match=r"tasks.yml: task 'Nope'"):
        single_entry_yaml(path, "Nope")


# --------------------------------------------------------------------------------------------
# Alias expansion is bounded


class AnyModel(BaseModel):
    """Takes any attachments, as ``skalds k8s`` does (no classes imported)."""

    model_config = ConfigDict(extra="allow")


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each anchor is a list of nine aliases of the previous one."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    lines += ["TaskWorkers:", "  cam1:", "    className: Any", "    attachments:", f"      frames: *l{levels - 1}"]
    return "\n".join(lines) + "\n"


class Budget:
    """CPU seconds and peak Python memory of a block (resource counters, not wall-clock time)."""

    def __enter__(self) -> Budget:
        tracemalloc.start()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu = usage.ru_utime + usage.ru_stime
        return self

    def __exit__(self, *exc: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = usage.ru_utime + usage.ru_stime - self._cpu
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_an_alias_bomb_is_refused_at_once_naming_file_and_line(tmp_path: Path) -> None:
    # Given a task file of under 700 bytes whose aliases expand to a billion values
    text = alias_bomb()
    assert len(text) < 700
    path = write(tmp_path, text)

    # When it is loaded
    with Budget() as spent:
        entries, errors = load_task_file(path, {"Any": AnyModel})

    # Then it is refused as a whole, in a few milliseconds of CPU and little memory
    assert entries == {}
    message = only_error(errors)
    assert message.startswith(f"{path}, line 14: ") and "aliases" in message and "100,000" in message
    assert errors[0].task_id is None  # a file-level error: an edge skald keeps what it runs
    assert spent.cpu < 0.5 and spent.peak < 5 * 1024 * 1024, (spent.cpu, spent.peak)


def test_every_reader_of_the_file_refuses_an_alias_bomb(tmp_path: Path) -> None:
    # Given the bomb in a task file
    path = write(tmp_path, alias_bomb())

    # When one entry is extracted (skalds k8s) or an update written back (edge)
    # Then each refuses it before expanding anything
    with Budget() as spent:
        with pytest.raises(TaskSourceError, match=r"tasks.yml, line 14: .*aliases"):
            single_entry_yaml(path, "cam1")
        with pytest.raises(TaskSourceError, match=r"tasks.yml, line 14: .*aliases"):
            write_back_attachments(path, "cam1", {"frames": 1})
    assert spent.cpu < 0.5 and spent.peak < 5 * 1024 * 1024, (spent.cpu, spent.peak)
    assert path.read_text() == alias_bomb()


def shared_list(values: int, uses: int) -> str:
    items = ", ".join(["1"] * values)
    text = f"base: &base [{items}]\nTaskWorkers:\n"
    for n in range(uses):
        text += f"  t{n}:\n    className: Any\n    attachments: {{items: *base}}\n"
    return text


def test_aliases_load_up_to_the_documented_limit(tmp_path: Path) -> None:
    # Given a list of 999 values (1,000 with the list) used 100 times through an alias: 100,000
    path = write(tmp_path, shared_list(999, 100))
    entries, errors = load_task_file(path, {"Any": AnyModel})
    assert errors == [] and len(entries) == 100
    assert entries["t99"].attachments["items"] == [1] * 999

    # When it is used once more
    path = write(tmp_path, shared_list(999, 101))
    entries, errors = load_task_file(path, {"Any": AnyModel})

    # Then the file is refused, on the line of the alias
    assert entries == {}
    assert "repeat 101,000 values" in only_error(errors) and "line 5:" in only_error(errors)


def test_a_long_string_repeated_by_aliases_counts_by_its_length(tmp_path: Path) -> None:
    # Given a 10,000-character string (101 values) used 1,000 times: 101,000
    text = 'text: &text "' + "x" * 10_000 + '"\nTaskWorkers:\n  t:\n    className: Any\n    attachments:\n'
    text += "      copies: [" + ", ".join(["*text"] * 1_000) + "]\n"
    path = write(tmp_path, text)

    entries, errors = load_task_file(path, {"Any": AnyModel})

    assert entries == {}
    assert "repeat 101,000 values" in only_error(errors) and "line 6:" in only_error(errors)
