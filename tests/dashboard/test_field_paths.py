"""The dashboard puts each 422 detail under the control its ``field`` names, so every attachment
error must name the field itself — also when the field is missing."""

from __future__ import annotations

from skalds.model.attachments import attachment_errors

SCHEMA = {
    "type": "object",
    "properties": {
        "rtspUrl": {"type": "string", "minLength": 1},
        "fixFrame": {"type": "integer", "minimum": 1},
        "roi": {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"],
        },
    },
    "required": ["rtspUrl", "fixFrame"],
}


def test_each_detail_names_the_field():
    details = attachment_errors(SCHEMA, {"fixFrame": 0, "roi": {"x": "a"}})
    assert {d["field"] for d in details} == {
        "attachments.rtspUrl",  # missing: named, not "attachments"
        "attachments.fixFrame",
        "attachments.roi.x",
        "attachments.roi.y",
    }
    by_field = {d["field"]: d["message"] for d in details}
    assert by_field["attachments.rtspUrl"] == "'rtspUrl' is a required property"
    assert by_field["attachments.fixFrame"] == "0 is less than the minimum of 1"


def test_errors_about_the_whole_object_stay_on_attachments():
    strict = {**SCHEMA, "additionalProperties": False}
    details = attachment_errors(strict, {"rtspUrl": "r", "fixFrame": 1, "extra": 1})
    assert [d["field"] for d in details] == ["attachments"]
    assert attachment_errors(SCHEMA, [1])[0]["field"] == "attachments"
