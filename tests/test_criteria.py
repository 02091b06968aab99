"""The matching-criteria language on its own: a table of cases per operator (including the
edge cases of the EventBridge documentation), validation errors with their path, and
properties checked with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.criteria import CriteriaError, compile_pattern, explain_pattern

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
field_names = st.text(min_size=1, max_size=5).filter(lambda key: key != "$or")  # "$or" is an operator


@given(key=field_names, value=scalars)
def test_a_value_matches_a_pattern_listing_it(key, value):
    assert compile_pattern({"data": {key: [value]}})({"data": {key: value}})


@given(key=field_names, value=st.text(max_size=8), others=st.lists(st.text(max_size=8)))
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


# --- cost bound: wildcards without backtracking -------------------------------------------------

LONG = "a" * 100_000

PATHOLOGICAL = [
    # (wildcard, value, expected): patterns that take a backtracking regex seconds or more
    ("*a*a*a*a*a*a*b", LONG, False),
    ("*a*a*a*a*a*a*b", LONG + "b", True),
    ("*a*a*a*a*a*a*a*", LONG, True),
    ("a*a*a*a*a*a*a*a", LONG, True),
    ("*ab*", LONG, False),
    ("*ab*", LONG + "b", True),
    ("*aab*ba*", LONG + "b" + LONG, False),
    ("*aab*ba*", LONG + "b" + "a", False),  # "ba" may not reuse the "b" of "aab"
    ("*aab*ba*", LONG + "b" + "ba", True),
    ("*" + "a" * 4000 + "b*", LONG, False),
    ("a*b", LONG, False),
    ("a*a", "a", False),  # the prefix and the suffix may not overlap
    ("a*a", "aa", True),
]


# A backtracking matcher hangs on these: the timeout only turns a hang into a failure.
@pytest.mark.timeout(30, method="thread")
@pytest.mark.parametrize(("wildcard", "value", "expected"), PATHOLOGICAL,
                         ids=[str(i) for i in range(len(PATHOLOGICAL))])
def test_pathological_wildcards_answer_correctly_on_100kb_strings(wildcard, value, expected):
    assert compile_pattern({"s": [{"wildcard": wildcard}]})({"s": value}) is expected
    assert compile_pattern({"s": [{"anything-but": {"wildcard": wildcard}}]})({"s": value}) is not expected
    # the same value inside an array of many: every element is tried
    assert compile_pattern({"s": [{"wildcard": wildcard}]})({"s": ["x"] * 1000 + [value]}) is expected


@pytest.mark.timeout(30, method="thread")
def test_case_insensitive_operators_on_100kb_strings():
    value = "Stop" + "ß" * 100_000
    assert compile_pattern({"s": [{"prefix": {"equals-ignore-case": "STOP"}}]})({"s": value})
    assert compile_pattern({"s": [{"suffix": {"equals-ignore-case": "SS"}}]})({"s": value})
    assert not compile_pattern({"s": [{"equals-ignore-case": "stop"}]})({"s": value})
    assert compile_pattern({"s": [{"anything-but": {"equals-ignore-case": ["stop", "go"]}}]})({"s": value})


@pytest.mark.timeout(30, method="thread")
def test_cidr_on_long_strings():
    pattern = compile_pattern({"s": [{"cidr": "10.0.0.0/8"}, {"cidr": "fe80::/10"}]})
    assert not pattern({"s": "10.0.0.1" + "1" * 100_000})
    assert not pattern({"s": ["1." * 50_000] * 20})
    assert pattern({"s": ["1." * 50_000, "10.0.0.1"]})
    assert pattern({"s": "fe80::1%eth0"})  # a zone id is still an address


STAR = object()  # a wildcard token; every other token is a literal character


def reference_match(tokens: list, value: str) -> bool:
    """Glob matching by dynamic programming over (token, character) pairs: no regex, no fnmatch."""
    # can[i][j]: tokens[i:] match value[j:]
    can = [[False] * (len(value) + 1) for _ in range(len(tokens) + 1)]
    can[len(tokens)][len(value)] = True
    for i in range(len(tokens) - 1, -1, -1):
        for j in range(len(value), -1, -1):
            if tokens[i] is STAR:
                can[i][j] = can[i + 1][j] or (j < len(value) and can[i][j + 1])
            else:
                can[i][j] = j < len(value) and tokens[i] == value[j] and can[i + 1][j + 1]
    return can[0][0]


def wildcard_text(tokens: list) -> str:
    """The wildcard string for `tokens`: literal `*` and `\\` escaped with a backslash."""
    return "".join("*" if token is STAR else "\\" + token if token in "*\\" else token for token in tokens)


def _no_double_star(tokens: list) -> bool:
    return not any(a is STAR and b is STAR for a, b in zip(tokens, tokens[1:], strict=False))


glob_tokens = st.lists(st.one_of(st.sampled_from("ab*\\"), st.just(STAR)), max_size=10).filter(_no_double_star)


@settings(max_examples=1000)
@given(tokens=glob_tokens, value=st.text(alphabet="ab*\\", max_size=14))
def test_wildcard_agrees_with_a_reference_matcher(tokens, value):
    pattern = {"s": [{"wildcard": wildcard_text(tokens)}]}
    assert compile_pattern(pattern)({"s": value}) is reference_match(tokens, value)


@given(tokens=glob_tokens, fills=st.lists(st.text(alphabet="ab*\\", max_size=4), min_size=10, max_size=10))
def test_wildcard_matches_every_instance_of_itself(tokens, fills):
    """Random values rarely match; these always should (each `*` replaced by some text)."""
    value = "".join(fills[i] if token is STAR else token for i, token in enumerate(tokens))
    assert reference_match(tokens, value)
    assert compile_pattern({"s": [{"wildcard": wildcard_text(tokens)}]})({"s": value})


@pytest.mark.parametrize(("wildcard", "value", "expected"), [
    ("a\\**", "a*bc", True),  # an escaped star, then a wildcard
    ("a\\**", "ab", False),
    ("\\\\*", "\\x", True),  # an escaped backslash, then a wildcard
    ("C:\\Users\\\\*", "C:\\Users\\me", True),  # a backslash before anything else is itself
    ("C:\\Users\\*", "C:\\Users\\me", False),  # "\\*" is a literal star
    ("*b*b", "ab", False),  # a middle piece may not reach into the suffix
    ("*b*b", "abb", True),
    ("*", "", True),
    ("", "", True),
    ("", "x", False),
])
def test_wildcard_escapes_and_edges(wildcard, value, expected):
    assert compile_pattern({"s": [{"wildcard": wildcard}]})({"s": value}) is expected


casefold_text = st.text(alphabet="aAsSßẞİıiIﬁFΣσς", max_size=8)


@given(value=casefold_text, text=casefold_text)
def test_case_insensitive_operators_agree_with_folding_the_whole_value(value, text):
    folded, wanted = value.casefold(), text.casefold()
    document = {"s": value}
    assert compile_pattern({"s": [{"equals-ignore-case": text}]})(document) is (folded == wanted)
    assert compile_pattern({"s": [{"prefix": {"equals-ignore-case": text}}]})(document) is folded.startswith(wanted)
    assert compile_pattern({"s": [{"suffix": {"equals-ignore-case": text}}]})(document) is folded.endswith(wanted)
    excluded = compile_pattern({"s": [{"anything-but": {"equals-ignore-case": [text, "zz"]}}]})(document)
    assert excluded is (folded not in (wanted, "zz"))


# --- limits ---------------------------------------------------------------------------------------

def _wildcards(count: int) -> str:
    return "x" + "*x" * count


def _or_of(count: int) -> dict:
    return {"$or": [{"f": [str(i)]} for i in range(count)]}


LIMITS = [
    # any string: 4096 bytes of UTF-8, wherever it is
    ({"data": {"k": ["x" * 4097]}}, ["data", "k", 0]),
    ({"data": {"k": ["é" * 2049]}}, ["data", "k", 0]),  # 4098 bytes in 2049 characters
    ({"data": {"x" * 4097: ["a"]}}, ["data", "x" * 4097]),
    ({"data": {"k": [{"prefix": "x" * 4097}]}}, ["data", "k", 0, "prefix"]),
    ({"data": {"k": [{"suffix": {"equals-ignore-case": "x" * 4097}}]}}, ["data", "k", 0, "suffix"]),
    ({"data": {"k": [{"wildcard": "*" + "x" * 4097}]}}, ["data", "k", 0, "wildcard"]),
    ({"data": {"k": [{"anything-but": ["a", "x" * 4097]}]}}, ["data", "k", 0, "anything-but", 1]),
    ({"data": {"k": [{"anything-but": {"equals-ignore-case": ["a", "x" * 4097]}}]}},
     ["data", "k", 0, "anything-but", "equals-ignore-case", 1]),
    # all strings together: 64 KiB (16 strings of 4000 bytes fit, the 17th does not)
    ({"data": {"k": [f"{i:02d}" + "x" * 3998 for i in range(17)]}}, ["data", "k", 16]),
    # operators: 100 in the pattern, `exists` aside
    ({"data": {"k": [{"prefix": str(i)} for i in range(60)],
               "m": [{"exists": True}, *({"suffix": str(i)} for i in range(41))]}}, ["data", "m", 41]),
    ({"$or": [{"k": [{"numeric": [">", i]} for i in range(50)]},
              {"k": [{"anything-but": {"prefix": str(i)}} for i in range(51)]}]}, ["$or", 1, "k", 50]),
    # `*`: 8 in one wildcard, 16 in the pattern
    ({"data": {"k": [{"wildcard": _wildcards(9)}]}}, ["data", "k", 0, "wildcard"]),
    ({"data": {"k": [{"anything-but": {"wildcard": _wildcards(9)}}]}}, ["data", "k", 0, "anything-but", "wildcard"]),
    ({"data": {"k": [{"wildcard": _wildcards(8)}, {"wildcard": _wildcards(8)}],
               "m": [{"anything-but": {"wildcard": "*"}}]}}, ["data", "m", 0, "anything-but", "wildcard"]),
    # nesting
    ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": ["x"]}}}}}}}}}}}},
     ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]),
    # $or combinations: 10 x 10 x 10 = 1000 fit, x 2 does not
    ({**_or_of(10), "n1": _or_of(10), "n2": _or_of(10), "n3": _or_of(2)}, ["n3"]),
    ({"$or": [{**_or_of(10), "n": _or_of(10)}, {**_or_of(10), "n": {**_or_of(10), "m": _or_of(10)}}]},
     ["$or"]),  # 100 + 1000 alternatives
]


@pytest.mark.parametrize(("pattern", "path"), LIMITS, ids=[str(i) for i in range(len(LIMITS))])
def test_limits_are_refused_with_the_path_of_the_part_that_exceeds_them(pattern, path):
    with pytest.raises(CriteriaError) as error:
        compile_pattern(pattern)
    assert error.value.path == path
    assert "at most" in error.value.message


WITHIN_LIMITS = [
    {"data": {"k": ["x" * 4096, "é" * 2048]}},
    {"data": {"k": [f"{i:02d}" + "x" * 3998 for i in range(16)]}},
    {"data": {"k": [{"wildcard": _wildcards(8)}, {"anything-but": {"wildcard": _wildcards(8)}}]}},
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": ["x"]}}}}}}}}}}},
    {**_or_of(10), "n1": _or_of(10), "n2": _or_of(10)},
    {"data": {"k": list(range(1000))}},
    {"data": {"k": [{"prefix": str(i)} for i in range(60)],
              "m": [{"exists": True}, *({"suffix": str(i)} for i in range(40)), *range(899)]}},
]


@pytest.mark.parametrize("pattern", WITHIN_LIMITS, ids=[str(i) for i in range(len(WITHIN_LIMITS))])
def test_patterns_at_the_limits_are_accepted(pattern):
    compile_pattern(pattern)


# --- values as event-ruler reads them: arrays flattened, objects are not values -------------------

EXISTS = [
    # (field value, matches {"exists": true}); {"exists": false} is always the opposite
    ([], False),  # an empty array holds no value
    ([[], [[]]], False),
    ([{"a": 1}], False),  # an array of objects: the values are deeper (k.a), not at k
    ({"a": 1}, False),  # an object is not a value either (exists applies to leaves)
    ([None], True),
    ([[], ["x"]], True),
    ([{"a": 1}, 0], True),
    (None, True),
    ("", True),
    (0, True),
    (False, True),
]


@pytest.mark.parametrize(("value", "exists"), EXISTS, ids=[str(i) for i in range(len(EXISTS))])
def test_exists_needs_a_value(value, exists):
    document = {"data": {"k": value}}
    assert compile_pattern({"data": {"k": [{"exists": True}]}})(document) is exists
    assert compile_pattern({"data": {"k": [{"exists": False}]}})(document) is not exists


def test_exists_false_beside_other_values_is_an_or():
    pattern = compile_pattern({"k": [{"exists": False}, "x"]})
    assert pattern({"k": []})
    assert pattern({"k": ["y", "x"]})
    assert not pattern({"k": ["y"]})


ARRAYS = [
    ({"k": ["x"]}, {"k": [["y"], ["x"]]}, True),  # nested arrays are flattened
    ({"k": ["x"]}, {"k": [{"k": "x"}]}, False),
    ({"k": [{"prefix": "x"}]}, {"k": [[["xy"]]]}, True),
    ({"k": {"sku": ["B2"]}}, {"k": [[{"sku": "A1"}], [{"sku": "B2"}]]}, True),
    ({"k": {"sku": ["B2"]}}, {"k": []}, False),
    ({"k": {"sku": [{"exists": False}]}}, {"k": []}, True),  # no object: k.sku is missing
    ({"k": {"sku": [{"exists": False}]}}, {"k": ["B2"]}, True),
    ({"k": {"sku": [{"exists": True}]}}, {"k": [{"sku": []}]}, False),
    ({"k": ["x"]}, {"k": [[1, [2, [3]]], {"x": 1}, [None]]}, False),  # unhashable elements never crash
]


@pytest.mark.parametrize(("pattern", "document", "expected"), ARRAYS, ids=[str(i) for i in range(len(ARRAYS))])
def test_arrays_are_read_like_event_ruler(pattern, document, expected):
    assert compile_pattern(pattern)(document) is expected


def test_arrays_nested_deeper_than_the_python_stack():
    deep: list = ["x"]
    for _ in range(5000):
        deep = [deep]
    assert compile_pattern({"k": ["x"]})({"k": deep})
    assert compile_pattern({"k": [{"exists": False}]})({"k": [[[[]]]]})


# --- clause by clause (simulation's near misses) -------------------------------------------


@pytest.mark.parametrize(("pattern", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_explanation_agrees_with_the_compiled_pattern(pattern, expected):
    failed = explain_pattern(pattern)(EVENT)
    assert (failed == []) is expected, failed


@pytest.mark.parametrize(("pattern", "document", "expected"), ARRAYS, ids=[str(i) for i in range(len(ARRAYS))])
def test_explanation_reads_arrays_like_the_compiled_pattern(pattern, document, expected):
    assert (explain_pattern(pattern)(document) == []) is expected


EXPLAINED = [
    ({"data": {"keyword": ["STOP"], "price": [4]}}, [["data", "price"]]),
    ({"data": {"keyword": ["GO"], "price": [4]}}, [["data", "keyword"], ["data", "price"]]),
    ({"topic": ["SCG-Message"], "data": {"nested": {"deep": {"value": ["y"]}}}},
     [["data", "nested", "deep", "value"]]),
    ({"data": {"$or": [{"keyword": ["X"]}, {"tags": ["us"]}], "flag": [True]}}, [["data", "$or"]]),
    # the element of an array of objects that fails fewest clauses speaks for the field
    ({"data": {"items": {"sku": ["B2"], "qty": [9]}}}, [["data", "items", "qty"]]),
    ({"data": {"missing": {"x": [{"exists": True}], "y": [{"exists": False}]}}}, [["data", "missing", "x"]]),
]


@pytest.mark.parametrize(("pattern", "failed"), EXPLAINED, ids=[str(i) for i in range(len(EXPLAINED))])
def test_explanation_names_each_failing_clause_by_its_path(pattern, failed):
    assert explain_pattern(pattern)(EVENT) == failed


def test_explanation_validates_like_compilation():
    with pytest.raises(CriteriaError) as error:
        explain_pattern({"data": {"keyword": [{"prefix": 5}]}})
    assert error.value.path == ["data", "keyword", 0, "prefix"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", 1, None]), max_size=3),
       st.sampled_from([
           {"a": ["x"]}, {"a": ["x"], "b": [{"exists": True}]}, {"$or": [{"a": ["x"]}, {"b": ["y"]}], "c": [1]},
           {"a": [{"anything-but": "x"}], "c": [{"numeric": [">", 0]}]}, {"b": [None, "y"]},
       ]))
def test_explanation_is_empty_exactly_when_the_pattern_matches(document, pattern):
    assert (explain_pattern(pattern)(document) == []) is compile_pattern(pattern)(document)
