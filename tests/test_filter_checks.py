"""``--filter`` items Label Studio 1.23 answers 500 for, or ignores without a word, are refused before a job starts
(found by an audit of ``labelhub predict``, stop 56): ``in``/``not_in`` with a plain value, a ``Number`` value that is
no number, a ``Datetime`` value that is no date, a ``child_filter`` not under ``filter:tasks:``."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelhub.backend.labelstudio_api import data_manager_filters


def _item(**changes) -> dict:
    return {"filter": "filter:tasks:id", "operator": "less", "type": "Number", "value": 5, **changes}


@pytest.mark.parametrize("item, says", [
    (_item(operator="in", value=5), 'the operator in takes a value {"min": ..., "max": ...}'),
    (_item(operator="not_in", value=[1, 2]), "the operator not_in takes"),
    (_item(value="abc"), '"abc" is not a number (type Number)'),
    (_item(value=True), "true is not a number"),
    (_item(filter="filter:tasks:completed_at", type="Datetime", operator="equal", value="yesterday"),
     '"yesterday" is not a date and time in ISO 8601'),
    (_item(child_filter=_item(filter="tasks:id")),
     "item 1, its child_filter: the filter must start with filter:tasks:"),
    (_item(child_filter=_item(value="x")), "item 1, its child_filter: \"x\" is not a number"),
])
def test_a_filter_label_studio_would_answer_500_for_or_ignore_is_refused_with_where_and_why(item, says):
    with pytest.raises(ValueError) as caught:
        data_manager_filters(json.dumps(item))
    assert says in str(caught.value) and str(caught.value).startswith("--filter, item 1")


@pytest.mark.parametrize("item", [
    _item(operator="in", value={"min": 1, "max": 9}),
    _item(value="7"),  # Label Studio reads a number's text
    _item(operator="empty", value=True),
    _item(filter="filter:tasks:completed_at", type="Datetime", operator="less", value="2026-12-08T10:00:00.000Z"),
    _item(filter="filter:tasks:completed_at", type="Datetime", operator="in",
          value={"min": "2026-12-01T00:00:00Z", "max": "2026-12-08T00:00:00+01:00"}),
    _item(child_filter=_item(operator="greater", value=1)),
    _item(filter="filter:tasks:data.split", type="String", operator="equal", value="test"),
])
def test_the_filters_label_studio_takes_pass_as_they_are(item):
    assert data_manager_filters([item]) == {"conjunction": "and", "items": [item]}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                   max_size=3), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({}, optional={"filter": st.sampled_from(["filter:tasks:id", "tasks:id"]) | _json,
                                           "operator": st.sampled_from(["in", "less", "empty"]) | _json,
                                           "type": st.sampled_from(["Number", "Datetime", "String"]) | _json,
                                           "value": _json, "child_filter": _json}))
def test_any_item_is_a_checked_filter_or_a_value_error_naming_it(item):
    try:
        checked = data_manager_filters([item])
    except ValueError as exc:
        assert str(exc).startswith("--filter, item 1") and "\n" not in str(exc)
    else:
        assert checked["items"][0]["filter"].startswith("filter:tasks:")
