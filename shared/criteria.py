"""Matching criteria: EventBridge-style event patterns, compiled once into a predicate.

A pattern is an object whose keys name fields of the event document. A key maps to
- a list of accepted values: literals (string, number, bool, null) and operator objects,
  any of which may match (OR); when the event field is an array, any element may match;
- an object: a nested pattern for a nested field;
and `$or` maps to a list of sub-patterns, one of which must match. Keys are ANDed.

Operators: `prefix`, `suffix` (a string, or `{"equals-ignore-case": s}`), `equals-ignore-case`,
`wildcard` (`*` for any run of characters, `\\*` for a literal star), `anything-but` (a
literal, a list of literals, or a `prefix`/`suffix`/`equals-ignore-case`/`wildcard` object),
`numeric` (`[">", 0, "<=", 5]`), `exists` (true/false), `cidr` (an IPv4/IPv6 network).

A missing field matches only `{"exists": false}`. `compile_pattern` raises `CriteriaError`
with the path of the bad part, which the API returns as the 422's `loc`.
"""

from __future__ import annotations

import ipaddress
import re
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


class CriteriaError(ValueError):
    def __init__(self, path: list, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compile_pattern(pattern: Any) -> Callable[[dict], bool]:
    """Return `matches(document) -> bool` for a validated pattern."""
    counter = [0]
    return _compile_object(pattern, [], counter, depth=0)


def _compile_object(pattern: Any, path: list, counter: list[int], depth: int) -> Callable[[Any], bool]:
    if not isinstance(pattern, dict):
        raise CriteriaError(path, "a pattern must be an object mapping field names to lists of values")
    if depth > MAX_DEPTH:
        raise CriteriaError(path, f"patterns may nest at most {MAX_DEPTH} levels")
    if not pattern and depth > 0:
        raise CriteriaError(path, "a nested pattern must not be empty")
    checks: list[Callable[[Any], bool]] = []
    for key, spec in pattern.items():
        here = [*path, key]
        if key == "$or":
            checks.append(_compile_or(spec, here, counter, depth))
        elif isinstance(spec, dict):
            nested = _compile_object(spec, here, counter, depth + 1)
            checks.append(_field_object(key, nested))
        elif isinstance(spec, list):
            checks.append(_field_values(key, _compile_values(spec, here, counter)))
        else:
            raise CriteriaError(here, "must be a list of accepted values or a nested pattern object")

    def matches(document: Any) -> bool:
        return all(check(document) for check in checks)

    return matches


def _compile_or(spec: Any, path: list, counter, depth: int) -> Callable[[Any], bool]:
    if not isinstance(spec, list) or len(spec) < 2:
        raise CriteriaError(path, "$or takes a list of at least two patterns")
    alternatives = [_compile_object(sub, [*path, i], counter, depth + 1) for i, sub in enumerate(spec)]
    return lambda document: any(alternative(document) for alternative in alternatives)


def _field_object(key: str, nested: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(document: Any) -> bool:
        value = document.get(key, MISSING) if isinstance(document, dict) else MISSING
        if isinstance(value, list):
            return any(nested(item) for item in value if isinstance(item, dict))
        return nested(value if isinstance(value, dict) else {})

    return check


def _field_values(key: str, value_matches: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(document: Any) -> bool:
        value = document.get(key, MISSING) if isinstance(document, dict) else MISSING
        return value_matches(value)

    return check


def _compile_values(spec: list, path: list, counter: list[int]) -> Predicate:
    if not spec:
        raise CriteriaError(path, "the list of accepted values must not be empty")
    counter[0] += len(spec)
    if counter[0] > MAX_VALUES:
        raise CriteriaError(path, f"a pattern may hold at most {MAX_VALUES} values")
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
                operators.append(_compile_operator(item, here))
        elif item is None:
            has_null = True
        elif isinstance(item, str | bool) or _is_number(item):
            literal_set.add(_literal_key(item))
        else:
            raise CriteriaError(here, "values must be strings, numbers, booleans, null or operator objects")

    def scalar_matches(value: Any) -> bool:
        if value is None:
            return has_null
        if isinstance(value, dict):
            return False
        if literal_set and _literal_key(value) in literal_set:
            return True
        return any(operator(value) for operator in operators)

    def matches(value: Any) -> bool:
        if value is MISSING:
            return exists_rule is False
        if exists_rule is True and not isinstance(value, dict):
            return True
        if isinstance(value, list):
            return any(scalar_matches(item) for item in value)
        return scalar_matches(value)

    return matches


def _literal_key(value: Any) -> Any:
    # 5 and 5.0 are the same number; True must not equal 1.
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return ("number", float(value))
    return ("string", value)


def _compile_operator(item: dict, path: list) -> Predicate:
    if len(item) != 1:
        raise CriteriaError(path, "an operator object has exactly one key")
    (name, argument), = item.items()
    here = [*path, name]
    if name in ("prefix", "suffix"):
        return _compile_affix(name, argument, here)
    if name == "equals-ignore-case":
        text = _require_string(argument, here).casefold()
        return lambda value: isinstance(value, str) and value.casefold() == text
    if name == "wildcard":
        regex = _wildcard_regex(_require_string(argument, here), here)
        return lambda value: isinstance(value, str) and regex.fullmatch(value) is not None
    if name == "anything-but":
        return _compile_anything_but(argument, here)
    if name == "numeric":
        return _compile_numeric(argument, here)
    if name == "cidr":
        try:
            network = ipaddress.ip_network(_require_string(argument, here), strict=False)
        except ValueError as exc:
            raise CriteriaError(here, f"not a CIDR network: {exc}") from None
        return lambda value: _in_network(value, network)
    raise CriteriaError(here, f"unknown operator {name!r}")


def _require_string(argument: Any, path: list) -> str:
    if not isinstance(argument, str):
        raise CriteriaError(path, "takes a string")
    return argument


def _compile_affix(name: str, argument: Any, path: list) -> Predicate:
    ignore_case = isinstance(argument, dict)
    if ignore_case:
        if set(argument) != {"equals-ignore-case"}:
            raise CriteriaError(path, f"{name} takes a string or {{\"equals-ignore-case\": string}}")
        argument = argument["equals-ignore-case"]
    text = _require_string(argument, path)
    if ignore_case:
        text = text.casefold()

    def matches(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        subject = value.casefold() if ignore_case else value
        return subject.startswith(text) if name == "prefix" else subject.endswith(text)

    return matches


def _wildcard_regex(text: str, path: list) -> re.Pattern:
    if "**" in text:
        raise CriteriaError(path, "consecutive wildcard characters are not allowed")
    parts, literal, index = [], "", 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "*\\":
            literal += text[index + 1]
            index += 2
            continue
        if char == "*":
            parts.append(re.escape(literal))
            parts.append(".*")
            literal = ""
        else:
            literal += char
        index += 1
    parts.append(re.escape(literal))
    return re.compile("".join(parts), re.DOTALL)


def _compile_anything_but(argument: Any, path: list) -> Predicate:
    if isinstance(argument, dict):
        if len(argument) != 1 or next(iter(argument)) not in (
            "prefix", "suffix", "equals-ignore-case", "wildcard"
        ):
            raise CriteriaError(
                path, "anything-but takes values or one of prefix, suffix, equals-ignore-case, wildcard"
            )
        name, inner = next(iter(argument.items()))
        if name == "equals-ignore-case" and isinstance(inner, list):
            folded = {_require_string(v, [*path, name]).casefold() for v in inner}
            return lambda value: isinstance(value, str) and value.casefold() not in folded
        inner_match = _compile_operator(argument, path)
        return lambda value: isinstance(value, str) and not inner_match(value)
    values = argument if isinstance(argument, list) else [argument]
    if not values:
        raise CriteriaError(path, "anything-but needs at least one value")
    excluded = set()
    for index, value in enumerate(values):
        if not (isinstance(value, str) or _is_number(value)):
            raise CriteriaError([*path, index], "anything-but values must be strings or numbers")
        excluded.add(_literal_key(value))
    return lambda value: (isinstance(value, str) or _is_number(value)) and _literal_key(value) not in excluded


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
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False
