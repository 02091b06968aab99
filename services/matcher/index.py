"""The matcher's in-memory view of who wants what.

Routes (compiled subscriptions) are kept per (company, topic), so an event only ever looks at
the subscriptions of its own company and topic: the cost per event does not grow with the
number of subscriptions that cannot match. Broadcast events (NIS-Events) first find the
companies that monitor their subject, then those companies' routes.

Monitored numbers are stored as integers (the E.164 digits) mapping to one company id, or a
tuple of them when several companies monitor a number: about 90 bytes per number.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from shared.routes import Route, route_from_row

__all__ = ["Route", "SubscriptionIndex", "number_key", "route_from_row"]


def number_key(number: str | None) -> int | None:
    if not number or number[0] != "+" or not number[1:].isdigit():
        return None
    return int(number[1:])


class SubscriptionIndex:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Route]] = {}
        self._company_route_keys: dict[str, set[tuple[str, str]]] = {}
        self.numbers: dict[int, str | tuple[str, ...]] = {}
        self._company_numbers: dict[str, array] = {}

    # --- reads (hot path) ----------------------------------------------------------------

    def routes_for(self, company_id: str, topic: str) -> list[Route]:
        return self.routes.get((company_id, topic), [])

    def companies_monitoring(self, number: str | None) -> tuple[str, ...]:
        key = number_key(number)
        owners = self.numbers.get(key) if key is not None else None
        if owners is None:
            return ()
        return (owners,) if isinstance(owners, str) else owners

    # --- writes (start-up and change notifications) ---------------------------------------

    def replace_company_routes(self, company_id: str, routes: Iterable[Route]) -> None:
        for key in self._company_route_keys.pop(company_id, ()):
            self.routes.pop(key, None)
        keys = set()
        for route in routes:
            key = (company_id, route.topic)
            self.routes.setdefault(key, []).append(route)
            keys.add(key)
        if keys:
            self._company_route_keys[company_id] = keys

    def replace_all_routes(self, routes_by_company: dict[str, list[Route]]) -> None:
        for company_id in set(self._company_route_keys) - set(routes_by_company):
            self.replace_company_routes(company_id, [])
        for company_id, routes in routes_by_company.items():
            self.replace_company_routes(company_id, routes)

    def replace_company_numbers(self, company_id: str, numbers: Iterable[str]) -> None:
        for key in self._company_numbers.pop(company_id, array("q")):
            self._remove_owner(key, company_id)
        keys = array("q")
        for number in numbers:
            key = number_key(number)
            if key is not None:
                self._add_owner(key, company_id)
                keys.append(key)
        if keys:
            self._company_numbers[company_id] = keys

    def _add_owner(self, key: int, company_id: str) -> None:
        owners = self.numbers.get(key)
        if owners is None:
            self.numbers[key] = company_id
        elif isinstance(owners, str):
            if owners != company_id:
                self.numbers[key] = (owners, company_id)
        elif company_id not in owners:
            self.numbers[key] = (*owners, company_id)

    def _remove_owner(self, key: int, company_id: str) -> None:
        owners = self.numbers.get(key)
        if owners == company_id:
            del self.numbers[key]
        elif isinstance(owners, tuple):
            rest = tuple(owner for owner in owners if owner != company_id)
            self.numbers[key] = rest[0] if len(rest) == 1 else rest
