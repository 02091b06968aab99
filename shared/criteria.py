"""Matching criteria: EventBridge-style event patterns, compiled once into a predicate.

A pattern is an object whose keys name fields of the event document. A key maps to
- a list of accepted values: literals (string, number, bool, null) and operator objects,
  any of which may match (OR); when the event field is an array, any element may match;
- an object: a nested pattern for a nested field;
and `$or` maps to a list of sub-patterns, one of which must match. Keys are ANDed.

Operators: `prefix`, `suffix` (a string, or `{"equals-ignore-case": s}`), `equals-ignore-case`,
`wildcard` (`*` for any run of characters, `\\*` for a literal star, `\\\\` for a literal
backslash, `**` refused), `anything-but` (a literal, a list of literals, or a
`prefix`/`suffix`/`equals-ignore-case`/`wildcard` object), `numeric` (`[">", 0, "<=", 5]`),
`exists` (true/false), `cidr` (an IPv4/IPv6 network).

Values are read the way aws/event-ruler (EventBridge's matcher) reads them: the values of a
field are its scalars (null included), arrays are flattened (nested arrays too), and an object
is not a value (its fields are deeper paths). So `{"exists": true}` needs at least one value:
it does not match a missing field, an empty array, an array of objects, or an object;
`{"exists": false}` matches exactly those.

Cost bound. Matching never backtracks: a wildcard is split on its unescaped `*` into literal
pieces; the first must be a prefix, the last a suffix, and the middle ones are found left to
right with `str.find` (for `*`-only globs the leftmost match of each piece is always a right
choice), so one wildcard costs one pass over the value. Every other operator costs at most the
length of its own argument per value. Per event value, matching therefore costs
O(pattern text + value length x wildcards), kept small by these limits (422 when exceeded):

    limit                                   ours      EventBridge
    any string (field name, value, operand) 4096 B    whole pattern 2048 chars, 4096 on request
    all strings of a pattern together       64 KiB    (as above)
    operator objects (all but `exists`)     100       (as above: 2048 chars hold ~140 `{"prefix":"a"}`)
    `*` in one wildcard string              8         not published ("rule is too complex")
    `*` in the whole pattern                16        not published ("rule is too complex")
    values in the whole pattern             1000      not published
    nesting                                 10        not published
    `$or` combinations (sub-rules)          1000      not published

Literal values cost one set lookup however many there are; operators are tried one by one, so
an event value costs at most 100 operator calls, and an array value that many per element.

`compile_pattern` raises `CriteriaError` with the path of the bad part, which the API returns
as the 422's `loc`.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]

MISSING = object()
_NUMERIC_OPERATORS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "=": lambda a, b: a == b,
}
MAX_DEPTH = 10
MAX_VALUES = 1000
MAX_OPERATORS = 100
MAX_STRING_BYTES = 4096
MAX_PATTERN_BYTES = 64 * 1024
MAX_WILDCARDS_PER_STRING = 8
MAX_WILDCARDS = 16
MAX_OR_COMBINATIONS = 1000
# The longest text an IP address takes (45 characters for IPv6 with an IPv4 tail) plus room for
# a zone id such as %eth0: longer strings are not addresses, and are not parsed.
_MAX_ADDRESS_CHARS = 64


class CriteriaError(ValueError):
    def __init__(self, path: list, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


class _Budget:
    """What one pattern has spent of the limits so far; each charge names the path that overspends."""

    def __init__(self) -> None:
        self.values = 0
        self.operators = 0
        self.text_bytes = 0
        self.wildcards = 0

    def charge_values(self, count: int, path: list) -> None:
        self.values += count
        if self.values > MAX_VALUES:
            raise CriteriaError(path, f"a pattern may hold at most {MAX_VALUES} values")

    def charge_operator(self, path: list) -> None:
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise CriteriaError(path, f"a pattern may hold at most {MAX_OPERATORS} operators (exists aside)")

    def charge_text(self, text: str, path: list) -> None:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_STRING_BYTES:
            raise CriteriaError(path, f"strings in a pattern may be at most {MAX_STRING_BYTES} bytes long")
        self.text_bytes += size
        if self.text_bytes > MAX_PATTERN_BYTES:
            raise CriteriaError(path, f"a pattern may hold at most {MAX_PATTERN_BYTES} bytes of text in all")

    def charge_wildcards(self, count: int, path: list) -> None:
        if count > MAX_WILDCARDS_PER_STRING:
            raise CriteriaError(path, f"a wildcard may hold at most {MAX_WILDCARDS_PER_STRING} '*' characters")
        self.wildcards += count
        if self.wildcards > MAX_WILDCARDS:
            raise CriteriaError(path, f"a pattern may hold at most {MAX_WILDCARDS} '*' characters in all")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compile_pattern(pattern: Any) -> Callable[[dict], bool]:
    """Return `matches(document) -> bool` for a validated pattern."""
    matches, _combinations = _compile_object(pattern, [], _Budget(), depth=0)
    return matches


Explanation = Callable[[Any], list[list]]


def explain_pattern(pattern: Any) -> Explanation:
    """Return `failed_clauses(document) -> [path, ...]`: the clauses of a pattern that the
    document fails, each by its path in the pattern (["data", "carrier"], or [..., "$or"] for an
    `$or` as a whole). Empty exactly when `compile_pattern(pattern)` matches the document.

    A clause is a field mapped to a list of accepted values, or an `$or`; a nested object's
    clauses are its own fields. Where a nested pattern meets an array of objects, the element
    failing the fewest clauses speaks for the field. For simulations and explanations, not the
    matcher's hot path: it validates the pattern with `compile_pattern` first (CriteriaError)."""
    compile_pattern(pattern)
    return _explain_object(pattern, [])


def _explain_object(pattern: dict, path: list) -> Explanation:
    budget = _Budget()  # the pattern is valid: the budget is only what the compilers expect
    explainers: list[Explanation] = []
    for key, spec in pattern.items():
        here = [*path, key]
        if key == "$or":
            # An `$or` is one clause, reading the document it sits in as a whole.
            explainers.append(_clause(here, _compile_or(spec, here, budget, len(path))[0]))
        elif isinstance(spec, dict):
            explainers.append(_explain_field_object(key, _explain_object(spec, here)))
        else:
            explainers.append(_clause(here, _field_values(key, _compile_values(spec, here, budget))))

    def failed_clauses(document: Any) -> list[list]:
        return [path for explain in explainers for path in explain(document)]

    return failed_clauses


def _clause(path: list, check: Predicate) -> Explanation:
    return lambda document: [] if check(document) else [path]


def _explain_field_object(key: str, nested: Explanation) -> Explanation:
    """As `_field_object` reads the field, reporting the nested clauses that fail."""
    def failed_clauses(document: Any) -> list[list]:
        value = document.get(key, MISSING) if isinstance(document, dict) else MISSING
        if isinstance(value, dict):
            return nested(value)
        objects = _flatten(value, _is_object) if isinstance(value, list) else []
        if not objects:
            return nested({})
        return min((nested(item) for item in objects), key=len)

    return failed_clauses


def _compile_object(pattern: Any, path: list, budget: _Budget, depth: int) -> tuple[Predicate, int]:
    """The predicate, and how many sub-rules the pattern expands to (its `$or` combinations)."""
    if not isinstance(pattern, dict):
        raise CriteriaError(path, "a pattern must be an object mapping field names to lists of values")
    if depth > MAX_DEPTH:
        raise CriteriaError(path, f"patterns may nest at most {MAX_DEPTH} levels")
    if not pattern and depth > 0:
        raise CriteriaError(path, "a nested pattern must not be empty")
    checks: list[Predicate] = []
    combinations = 1
    for key, spec in pattern.items():
        here = [*path, key]
        budget.charge_text(key, here)
        if key == "$or":
            check, alternatives = _compile_or(spec, here, budget, depth)
            combinations *= alternatives
        elif isinstance(spec, dict):
            nested, alternatives = _compile_object(spec, here, budget, depth + 1)
            check, combinations = _field_object(key, nested), combinations * alternatives
        elif isinstance(spec, list):
            check = _field_values(key, _compile_values(spec, here, budget))
        else:
            raise CriteriaError(here, "must be a list of accepted values or a nested pattern object")
        if combinations > MAX_OR_COMBINATIONS:
            raise CriteriaError(here, f"a pattern may expand to at most {MAX_OR_COMBINATIONS} $or combinations")
        checks.append(check)

    def matches(document: Any) -> bool:
        return all(check(document) for check in checks)

    return matches, combinations


def _compile_or(spec: Any, path: list, budget: _Budget, depth: int) -> tuple[Predicate, int]:
    if not isinstance(spec, list) or len(spec) < 2:
        raise CriteriaError(path, "$or takes a list of at least two patterns")
    compiled = [_compile_object(sub, [*path, i], budget, depth + 1) for i, sub in enumerate(spec)]
    alternatives = [matches for matches, _ in compiled]
    return (lambda document: any(alternative(document) for alternative in alternatives),
            sum(combinations for _, combinations in compiled))


def _flatten(items: list, keep: Callable[[Any], bool]) -> list:
    """The elements of an array and of the arrays inside it that `keep` accepts (no recursion:
    an event may nest arrays deeper than Python's stack)."""
    found, pending = [], [items]
    while pending:
        for item in pending.pop():
            if isinstance(item, list):
                pending.append(item)
            elif keep(item):
                found.append(item)
    return found


def _is_object(item: Any) -> bool:
    return isinstance(item, dict)


def _is_value(item: Any) -> bool:
    return not isinstance(item, dict)


def _field_object(key: str, nested: Predicate) -> Predicate:
    def check(document: Any) -> bool:
        value = document.get(key, MISSING) if isinstance(document, dict) else MISSING
        if isinstance(value, dict):
            return nested(value)
        objects = _flatten(value, _is_object) if isinstance(value, list) else []
        # No object here: the nested fields are all missing, as they would be under a scalar.
        return any(nested(item) for item in objects) if objects else nested({})

    return check


def _field_values(key: str, value_matches: Predicate) -> Predicate:
    def check(document: Any) -> bool:
        value = document.get(key, MISSING) if isinstance(document, dict) else MISSING
        return value_matches(value)

    return check


def _compile_values(spec: list, path: list, budget: _Budget) -> Predicate:
    if not spec:
        raise CriteriaError(path, "the list of accepted values must not be empty")
    budget.charge_values(len(spec), path)
    literal_set: set = set()
    has_null = False
    operators: list[Predicate] = []
    exists_rule: bool | None = None
    for index, item in enumerate(spec):
        here = [*path, index]
        if isinstance(item, dict):
            if set(item) == {"exists"}:
                if not isinstance(item["exists"], bool):
                    raise CriteriaError([*here, "exists"], "exists takes true or false")
                exists_rule = item["exists"]
            else:
                budget.charge_operator(here)
                operators.append(_compile_operator(item, here, budget))
        elif item is None:
            has_null = True
        elif isinstance(item, str | bool) or _is_number(item):
            if isinstance(item, str):
                budget.charge_text(item, here)
            literal_set.add(_literal_key(item))
        else:
            raise CriteriaError(here, "values must be strings, numbers, booleans, null or operator objects")

    def value_matches(value: Any) -> bool:
        if value is None:
            return has_null
        if literal_set and _literal_key(value) in literal_set:
            return True
        for operator in operators:  # a loop, not any(): this is the innermost step of matching
            if operator(value):
                return True
        return False

    def matches(field: Any) -> bool:
        if isinstance(field, list):
            values = _flatten(field, _is_value)
        elif field is MISSING or isinstance(field, dict):
            values = []
        else:
            return exists_rule is True or value_matches(field)
        if exists_rule is not None and bool(values) is exists_rule:
            return True
        return any(value_matches(value) for value in values)

    return matches


def _literal_key(value: Any) -> Any:
    # 5 and 5.0 are the same number; True must not equal 1.
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return ("number", float(value))
    return ("string", value)


def _compile_operator(item: dict, path: list, budget: _Budget) -> Predicate:
    if len(item) != 1:
        raise CriteriaError(path, "an operator object has exactly one key")
    (name, argument), = item.items()
    here = [*path, name]
    if name in ("prefix", "suffix"):
        return _compile_affix(name, argument, here, budget)
    if name == "equals-ignore-case":
        text = _require_string(argument, here, budget).casefold()
        # casefold never shortens a string: a longer value cannot fold to `text`, and is not folded.
        return lambda value: isinstance(value, str) and len(value) <= len(text) and value.casefold() == text
    if name == "wildcard":
        glob = _compile_wildcard(_require_string(argument, here, budget), here, budget)
        return lambda value: isinstance(value, str) and glob(value)
    if name == "anything-but":
        return _compile_anything_but(argument, here, budget)
    if name == "numeric":
        return _compile_numeric(argument, here)
    if name == "cidr":
        try:
            network = ipaddress.ip_network(_require_string(argument, here, budget), strict=False)
        except ValueError as exc:
            raise CriteriaError(here, f"not a CIDR network: {exc}") from None
        return lambda value: _in_network(value, network)
    raise CriteriaError(here, f"unknown operator {name!r}")


def _require_string(argument: Any, path: list, budget: _Budget) -> str:
    if not isinstance(argument, str):
        raise CriteriaError(path, "takes a string")
    budget.charge_text(argument, path)
    return argument


def _compile_affix(name: str, argument: Any, path: list, budget: _Budget) -> Predicate:
    ignore_case = isinstance(argument, dict)
    if ignore_case:
        if set(argument) != {"equals-ignore-case"}:
            raise CriteriaError(path, f"{name} takes a string or {{\"equals-ignore-case\": string}}")
        argument = argument["equals-ignore-case"]
    text = _require_string(argument, path, budget)
    if not ignore_case:
        if name == "prefix":
            return lambda value: isinstance(value, str) and value.startswith(text)
        return lambda value: isinstance(value, str) and value.endswith(text)
    text = text.casefold()
    size = len(text)
    # Folding is per character and never shortens, so the first (last) `size` characters of
    # the value decide: fold those, not the whole value.
    if name == "prefix":
        return lambda value: isinstance(value, str) and value[:size].casefold().startswith(text)
    return lambda value: isinstance(value, str) and value[max(0, len(value) - size):].casefold().endswith(text)


def _compile_wildcard(text: str, path: list, budget: _Budget) -> Predicate:
    pieces = _wildcard_pieces(text, path)
    budget.charge_wildcards(len(pieces) - 1, path)
    if len(pieces) == 1:
        literal = pieces[0]
        return lambda value: value == literal
    first, *middle, last = pieces
    shortest = len(first) + len(last)

    def matches(value: str) -> bool:
        if len(value) < shortest or not value.startswith(first) or not value.endswith(last):
            return False
        position, end = len(first), len(value) - len(last)
        for piece in middle:
            found = value.find(piece, position, end)
            if found < 0:
                return False
            position = found + len(piece)
        return True

    return matches


def _wildcard_pieces(text: str, path: list) -> list[str]:
    """The literal pieces between the unescaped `*` of a wildcard: "a*b\\*c" -> ["a", "b*c"]."""
    pieces, literal, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "*\\":
            literal.append(text[index + 1])
            index += 2
            continue
        if char == "*":
            if text.startswith("*", index + 1):
                raise CriteriaError(path, "consecutive wildcard characters are not allowed")
            pieces.append("".join(literal))
            literal = []
        else:
            literal.append(char)
        index += 1
    pieces.append("".join(literal))
    return pieces


_ANYTHING_BUT_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")


def _compile_anything_but(argument: Any, path: list, budget: _Budget) -> Predicate:
    if isinstance(argument, dict):
        return _compile_anything_but_operator(argument, path, budget)
    values = argument if isinstance(argument, list) else [argument]
    if not values:
        raise CriteriaError(path, "anything-but needs at least one value")
    excluded = set()
    for index, value in enumerate(values):
        if not (isinstance(value, str) or _is_number(value)):
            raise CriteriaError([*path, index], "anything-but values must be strings or numbers")
        if isinstance(value, str):
            budget.charge_text(value, [*path, index])
        excluded.add(_literal_key(value))
    return lambda value: (isinstance(value, str) or _is_number(value)) and _literal_key(value) not in excluded


def _compile_anything_but_operator(argument: dict, path: list, budget: _Budget) -> Predicate:
    """`{"anything-but": {"prefix": ...}}` and the like: a string the inner operator refuses."""
    if len(argument) != 1 or next(iter(argument)) not in _ANYTHING_BUT_OPERATORS:
        raise CriteriaError(path, "anything-but takes values or one of prefix, suffix, equals-ignore-case, wildcard")
    name, inner = next(iter(argument.items()))
    if name == "equals-ignore-case" and isinstance(inner, list):
        folded = {_require_string(v, [*path, name, i], budget).casefold() for i, v in enumerate(inner)}
        longest = max((len(text) for text in folded), default=0)
        return lambda value: isinstance(value, str) and (len(value) > longest or value.casefold() not in folded)
    inner_match = _compile_operator(argument, path, budget)
    return lambda value: isinstance(value, str) and not inner_match(value)


def _compile_numeric(argument: Any, path: list) -> Predicate:
    if not isinstance(argument, list) or not argument or len(argument) % 2 or len(argument) > 4:
        raise CriteriaError(path, 'numeric takes one or two [operator, number] pairs, e.g. [">", 0, "<=", 5]')
    comparisons = []
    for index in range(0, len(argument), 2):
        operator, bound = argument[index], argument[index + 1]
        if operator not in _NUMERIC_OPERATORS:
            raise CriteriaError([*path, index], f"unknown numeric operator {operator!r}")
        if not _is_number(bound):
            raise CriteriaError([*path, index + 1], "numeric bounds must be numbers")
        comparisons.append((_NUMERIC_OPERATORS[operator], bound))

    def matches(value: Any) -> bool:
        return _is_number(value) and all(compare(value, bound) for compare, bound in comparisons)

    return matches


def _in_network(value: Any, network) -> bool:
    if not isinstance(value, str) or len(value) > _MAX_ADDRESS_CHARS:
        return False
    address = _address(value)
    return address is not None and address in network


@functools.lru_cache(maxsize=4096)
def _address(text: str):
    """Parsed once per distinct string, however many `cidr` operators look at it."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
