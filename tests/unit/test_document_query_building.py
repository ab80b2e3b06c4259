"""The pure query-building functions of the document stores (no server involved).

These check which filter and sort dictionaries a TaskQuery turns into; they say nothing about how a
database answers them. The MongoDB driver is exercised against a real server only by the contract
suite, when SKALDS_TEST_MONGO_URI is set.
"""

from __future__ import annotations

import re

import pytest

from skalds.backends.store.base import TaskQuery
from skalds.backends.store.document_query import conditions, page
from skalds.model.task import ModeEnum
from skalds.model.task import TaskLifecycleStatus as S

pytest.importorskip("pymongo")

from skalds.backends.store.mongo import task_filter, task_sort


def test_no_filters_is_an_empty_filter_document() -> None:
    assert task_filter(TaskQuery()) == {}


def test_every_filter_becomes_a_field_condition() -> None:
    # Given a query using every filter, with enum members
    query = TaskQuery(
        statuses=(S.RUNNING, S.ASSIGNING),
        class_name="Alpha",
        executor="e1",
        mode=ModeEnum.ACTIVE,  # a str enum: callers pass the member as well as its value
        ids=("t1", "t2"),
        search="job",
    )
    # When it is built / Then enum members become their values and search looks at id or name
    assert task_filter(query) == {
        "lifecycleStatus": {"$in": ["Running", "Assigning"]},
        "id": {"$in": ["t1", "t2"]},
        "className": "Alpha",
        "executor": "e1",
        "mode": "Active",
        "$or": [{"id": {"$regex": "job"}}, {"name": {"$regex": "job"}}],
    }


def test_empty_lists_match_nothing_and_empty_search_is_no_filter() -> None:
    assert task_filter(TaskQuery(statuses=(), ids=(), search="")) == {
        "lifecycleStatus": {"$in": []},
        "id": {"$in": []},
    }


def test_search_text_is_taken_literally() -> None:
    # Given search text full of regex syntax / When built
    built = task_filter(TaskQuery(search="a.b*(c)"))
    pattern = built["$or"][0]["id"]["$regex"]
    # Then the pattern matches that text as a substring and nothing looser
    assert re.search(pattern, "xx a.b*(c) yy")
    assert not re.search(pattern, "aXbbb(c)")


def test_sort_orders_end_with_the_id_tie_break() -> None:
    assert task_sort(TaskQuery()) == [("createDateTime", 1), ("id", 1)]
    assert task_sort(TaskQuery(order="-priority")) == [("priority", -1), ("createDateTime", 1), ("id", 1)]
    with pytest.raises(ValueError, match="unknown task order"):
        task_sort(TaskQuery(order="name"))


def test_paging_is_clamped_and_none_means_unlimited() -> None:
    assert page(TaskQuery()) == (0, None)
    assert page(TaskQuery(offset=-3, limit=-1)) == (0, 0)
    assert page(TaskQuery(offset=4, limit=2)) == (4, 2)
    assert conditions(TaskQuery(executor="e1")).equal == {"executor": "e1"}


def test_compare_and_set_at_version_0_also_matches_a_document_without_one() -> None:
    from skalds.backends.store.mongo import version_filter

    assert version_filter("t", 3) == {"id": "t", "version": 3}
    assert version_filter("t", 0) == {"id": "t", "$or": [{"version": 0}, {"version": {"$exists": False}}]}
