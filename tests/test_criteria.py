"""The matching-criteria language on its own: a table of cases per operator (including the
edge cases of the EventBridge documentation), validation errors with their path, and
properties checked with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.criteria import CriteriaError, compile_pattern

EVENT = {
    "topic": "SCG-Message",
    "event_type": "message.received",
    "subject": "+14155550100",
    "data": {
        "keyword": "STOP",
        "text": "Stop sending me offers",
        "price": 3.5,
        "count": 0,
        "tags": ["vip", "eu"],
        "source_ip": "10.0.3.17",
        "nothing": None,
        "flag": True,
        "file": "reports/2026/summary.csv",
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 5}],
        "nested": {"deep": {"value": "x"}},
    },
}

CASES = [
    # exact values: OR within a list, AND across fields, arrays match any element
    ({"data": {"keyword": ["STOP"]}}, True),
    ({"data": {"keyword": ["START", "STOP"]}}, True),
    ({"data": {"keyword": ["stop"]}}, False),
    ({"data": {"keyword": ["STOP"], "price": [3.5]}}, True),
    ({"data": {"keyword": ["STOP"], "price": [4]}}, False),
    ({"data": {"tags": ["eu"]}}, True),
    ({"data": {"tags": ["us"]}}, False),
    ({"data": {"count": [0]}}, True),
    ({"data": {"price": [3.50]}}, True),
    ({"data": {"flag": [True]}}, True),
    ({"data": {"flag": [1]}}, False),  # true is not the number 1
    ({"data": {"nothing": [None]}}, True),
    ({"data": {"missing": [None]}}, False),  # null matches a null value, not a missing field
    ({"topic": ["SCG-Message"], "event_type": ["message.received"]}, True),
    ({"data": {"nested": {"deep": {"value": ["x"]}}}}, True),
    ({"data": {"nested": {"deep": {"value": ["y"]}}}}, False),
    ({"data": {"items": {"sku": ["B2"]}}}, True),  # arrays of objects: any element
    ({"data": {"keyword": {"inner": ["x"]}}}, False),  # a nested pattern against a scalar
    # prefix / suffix, case-sensitive and not
    ({"data": {"file": [{"prefix": "reports/"}]}}, True),
    ({"data": {"file": [{"prefix": "REPORTS/"}]}}, False),
    ({"data": {"file": [{"prefix": {"equals-ignore-case": "REPORTS/"}}]}}, True),
    ({"data": {"file": [{"suffix": ".csv"}]}}, True),
    ({"data": {"file": [{"suffix": ".CSV"}]}}, False),
    ({"data": {"file": [{"suffix": {"equals-ignore-case": ".CSV"}}]}}, True),
    ({"data": {"price": [{"prefix": "3"}]}}, False),  # string operators never match numbers
    ({"subject": [{"prefix": "+1415"}]}, True),
    # equals-ignore-case
    ({"data": {"keyword": [{"equals-ignore-case": "stop"}]}}, True),
    ({"data": {"keyword": [{"equals-ignore-case": "sto"}]}}, False),
    # wildcard
    ({"data": {"file": [{"wildcard": "reports/*/summary.csv"}]}}, True),
    ({"data": {"file": [{"wildcard": "reports/*.csv"}]}}, True),  # * spans slashes
    ({"data": {"file": [{"wildcard": "*.json"}]}}, False),
    ({"data": {"text": [{"wildcard": "Stop*offers"}]}}, True),
    ({"data": {"file": [{"wildcard": "reports/2026/summary.csv"}]}}, True),
    ({"data": {"file": [{"wildcard": "reports/2026/summary\\*"}]}}, False),  # \* is a literal star
    # anything-but
    ({"data": {"keyword": [{"anything-but": "START"}]}}, True),
    ({"data": {"keyword": [{"anything-but": ["STOP", "START"]}]}}, False),
    ({"data": {"price": [{"anything-but": [1, 2]}]}}, True),
    ({"data": {"price": [{"anything-but": 3.5}]}}, False),
    ({"data": {"missing": [{"anything-but": "x"}]}}, False),  # needs the field to exist
    ({"data": {"file": [{"anything-but": {"prefix": "reports/"}}]}}, False),
    ({"data": {"file": [{"anything-but": {"prefix": "images/"}}]}}, True),
    ({"data": {"file": [{"anything-but": {"suffix": ".csv"}}]}}, False),
    ({"data": {"keyword": [{"anything-but": {"equals-ignore-case": ["stop", "end"]}}]}}, False),
    ({"data": {"keyword": [{"anything-but": {"equals-ignore-case": "start"}}]}}, True),
    ({"data": {"file": [{"anything-but": {"wildcard": "*.csv"}}]}}, False),
    ({"data": {"tags": [{"anything-but": "vip"}]}}, True),  # any element: "eu" is not "vip"
    # numeric
    ({"data": {"price": [{"numeric": [">", 0, "<=", 5]}]}}, True),
    ({"data": {"price": [{"numeric": [">", 3.5]}]}}, False),
    ({"data": {"price": [{"numeric": [">=", 3.5]}]}}, True),
    ({"data": {"price": [{"numeric": ["=", 3.5]}]}}, True),
    ({"data": {"count": [{"numeric": ["<", 0]}]}}, False),
    ({"data": {"keyword": [{"numeric": [">", 0]}]}}, False),  # not a number
    ({"data": {"flag": [{"numeric": [">", 0]}]}}, False),  # booleans are not numbers
    ({"data": {"items": {"qty": [{"numeric": [">", 4]}]}}}, True),
    # exists
    ({"data": {"keyword": [{"exists": True}]}}, True),
    ({"data": {"missing": [{"exists": True}]}}, False),
    ({"data": {"missing": [{"exists": False}]}}, True),
    ({"data": {"keyword": [{"exists": False}]}}, False),
    ({"data": {"nothing": [{"exists": True}]}}, True),  # null is a value
    ({"data": {"nested": [{"exists": True}]}}, False),  # exists applies to leaf fields
    ({"missing": {"deeper": [{"exists": False}]}}, True),
    # cidr
    ({"data": {"source_ip": [{"cidr": "10.0.0.0/16"}]}}, True),
    ({"data": {"source_ip": [{"cidr": "10.1.0.0/16"}]}}, False),
    ({"data": {"keyword": [{"cidr": "10.0.0.0/8"}]}}, False),  # not an address
    ({"data": {"source_ip": [{"cidr": "2001:db8::/32"}]}}, False),
    # $or
    ({"$or": [{"data": {"keyword": ["START"]}}, {"data": {"price": [{"numeric": ["<", 5]}]}}]}, True),
    ({"$or": [{"data": {"keyword": ["START"]}}, {"data": {"price": [{"numeric": [">", 5]}]}}]}, False),
    ({"data": {"$or": [{"keyword": ["X"]}, {"tags": ["vip"]}]}, "topic": ["SCG-Message"]}, True),
    ({"data": {"$or": [{"keyword": ["X"]}, {"tags": ["vip"]}]}, "topic": ["NIS-Events"]}, False),
    # mixing literals and operators in one list
    ({"data": {"keyword": ["START", {"prefix": "ST"}]}}, True),
    ({}, True),  # an empty pattern matches everything
]


@pytest.mark.parametrize(("pattern", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_operator_table(pattern, expected):
    assert compile_pattern(pattern)(EVENT) is expected


INVALID = [
    ({"data": "STOP"}, ["data"]),
    ({"data": {"keyword": []}}, ["data", "keyword"]),
    ({"data": {"keyword": [{"prefix": 5}]}}, ["data", "keyword", 0, "prefix"]),
    ({"data": {"keyword": [{"unknown-op": "x"}]}}, ["data", "keyword", 0, "unknown-op"]),
    ({"data": {"keyword": [{"prefix": "a", "suffix": "b"}]}}, ["data", "keyword", 0]),
    ({"data": {"price": [{"numeric": [">", "5"]}]}}, ["data", "price", 0, "numeric", 1]),
    ({"data": {"price": [{"numeric": ["~", 5]}]}}, ["data", "price", 0, "numeric", 0]),
    ({"data": {"price": [{"numeric": [">"]}]}}, ["data", "price", 0, "numeric"]),
    ({"data": {"ip": [{"cidr": "10.0.0.0/33"}]}}, ["data", "ip", 0, "cidr"]),
    ({"data": {"k": [{"exists": "yes"}]}}, ["data", "k", 0, "exists"]),
    ({"data": {"k": [{"wildcard": "a**b"}]}}, ["data", "k", 0, "wildcard"]),
    ({"data": {"k": [{"anything-but": {"numeric": [">", 1]}}]}}, ["data", "k", 0, "anything-but"]),
    ({"data": {"k": [{"anything-but": []}]}}, ["data", "k", 0, "anything-but"]),
    ({"$or": [{"a": ["x"]}]}, ["$or"]),
    ({"data": {"k": [[1]]}}, ["data", "k", 0]),
    ({"data": {}}, ["data"]),
    ("not an object", []),
]


@pytest.mark.parametrize(("pattern", "path"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_patterns_name_the_bad_part(pattern, path):
    with pytest.raises(CriteriaError) as error:
        compile_pattern(pattern)
    assert error.value.path == path


def test_size_limit():
    with pytest.raises(CriteriaError, match="at most"):
        compile_pattern({"data": {"k": list(range(1001))}})


scalars = st.one_of(st.text(max_size=8), st.integers(-1000, 1000), st.booleans(), st.none())


@given(key=st.text(min_size=1, max_size=5), value=scalars)
def test_a_value_matches_a_pattern_listing_it(key, value):
    assert compile_pattern({"data": {key: [value]}})({"data": {key: value}})


@given(key=st.text(min_size=1, max_size=5), value=st.text(max_size=8), others=st.lists(st.text(max_size=8)))
def test_anything_but_is_the_complement_of_the_values(key, value, others):
    document = {"data": {key: value}}
    listed = compile_pattern({"data": {key: [value, *others]}})(document)
    excluded = compile_pattern({"data": {key: [{"anything-but": [value, *others]}]}})(document)
    assert listed != excluded


@given(value=st.floats(-1e6, 1e6, allow_nan=False), low=st.integers(-1000, 1000), high=st.integers(-1000, 1000))
def test_numeric_range_agrees_with_python(value, low, high):
    pattern = {"n": [{"numeric": [">=", low, "<", high]}]}
    assert compile_pattern(pattern)({"n": value}) is (low <= value < high)


@given(text=st.text(max_size=12), cut=st.integers(0, 12))
def test_prefix_and_wildcard_agree(text, cut):
    prefix = text[:cut].replace("*", "")
    document = {"s": text}
    by_prefix = compile_pattern({"s": [{"prefix": prefix}]})(document)
    by_wildcard = compile_pattern({"s": [{"wildcard": prefix.replace("\\", "\\\\") + "*"}]})(document)
    assert by_prefix == by_wildcard


@given(a=st.booleans(), b=st.booleans())
def test_or_and_and(a, b):
    document = {"a": "yes" if a else "no", "b": "yes" if b else "no"}
    both = compile_pattern({"a": ["yes"], "b": ["yes"]})(document)
    either = compile_pattern({"$or": [{"a": ["yes"]}, {"b": ["yes"]}]})(document)
    assert both is (a and b)
    assert either is (a or b)
