"""Delivery configurations: the rules that span fields, and the split of what is shown from what
is encrypted (passwords, client secret, refresh token, signing secret)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.schemas import SECRET_FIELDS, DeliveryConfigurationCreate, DeliveryConfigurationUpdate
from services.api.store import find_owned, saved
from services.api.store.patch import merge_patch
from shared.errors import InvalidInput
from shared.ids import new_id
from shared.models import DeliveryConfiguration
from shared.netguard import UrlRefused, check_url
from shared.schedules import InvalidSchedule, next_fire_times
from shared.security import decrypt_json, encrypt_json
from shared.settings import Settings


async def find(session: AsyncSession, company_id: str, delivery_configuration_id: str) -> DeliveryConfiguration:
    return await find_owned(session, DeliveryConfiguration, company_id, delivery_configuration_id,
                            "delivery configuration")


async def list_all(session: AsyncSession, company_id: str) -> list[DeliveryConfiguration]:
    return list((await session.scalars(
        select(DeliveryConfiguration).where(DeliveryConfiguration.company_id == company_id)
        .order_by(DeliveryConfiguration.id))).all())


def secrets_of(configuration: DeliveryConfiguration, secret_key: str) -> dict[str, str]:
    return decrypt_json(secret_key, configuration.secrets_encrypted)


def upcoming_fire_times(configuration: DeliveryConfiguration, count: int = 5) -> list[datetime] | None:
    if configuration.mode != "scheduled" or not configuration.schedule:
        return None
    try:
        return next_fire_times(configuration.schedule, datetime.now(UTC), count)
    except (InvalidSchedule, TypeError, ValueError):
        return None  # a row an older release stored; the scheduler reports it as a dead letter


async def create(session: AsyncSession, company_id: str, body: DeliveryConfigurationCreate,
                 settings: Settings) -> DeliveryConfiguration:
    values = body.model_dump()
    await _check(values, settings)
    configuration = DeliveryConfiguration(id=new_id("dc"), company_id=company_id, endpoints=[])
    _write(configuration, values, settings.secret_key)
    return await saved(session, configuration)


async def update(session: AsyncSession, company_id: str, delivery_configuration_id: str,
                 patch: DeliveryConfigurationUpdate, settings: Settings) -> DeliveryConfiguration:
    """The merged result is checked as a whole, as a new configuration would be."""
    configuration = await find(session, company_id, delivery_configuration_id)
    values = merge_patch(_current(configuration, secrets_of(configuration, settings.secret_key)), patch)
    await _check(values, settings)
    _write(configuration, values, settings.secret_key)
    return await saved(session, configuration)


async def delete(session: AsyncSession, company_id: str, delivery_configuration_id: str) -> None:
    """Its subscriptions go with it (ON DELETE CASCADE); past events and attempts stay."""
    await session.delete(await find(session, company_id, delivery_configuration_id))


def _current(configuration: DeliveryConfiguration, secrets: dict[str, str]) -> dict[str, Any]:
    """The stored configuration as a create body would give it, secrets decrypted."""
    return {
        "name": configuration.name,
        "mode": configuration.mode,
        "active": configuration.active,
        "endpoints": [{"url": e["url"], "active": e["active"]} for e in configuration.endpoints],
        "format": configuration.format,
        "throttle": configuration.throttle,
        "schedule": configuration.schedule,
        "authentication": {**configuration.authentication,
                           **{k: v for k, v in secrets.items() if k in SECRET_FIELDS}},
        "signing_secret": secrets.get("signing_secret"),
    }


def _write(configuration: DeliveryConfiguration, values: dict[str, Any], secret_key: str) -> None:
    visible, hidden = _split_authentication(values["authentication"])
    if values["signing_secret"]:
        hidden["signing_secret"] = values["signing_secret"]
    configuration.name = values["name"]
    configuration.mode = values["mode"]
    configuration.active = values["active"]
    configuration.endpoints = _with_endpoint_ids(values["endpoints"], configuration.endpoints)
    configuration.format = values["format"]
    configuration.throttle = values["throttle"]
    configuration.schedule = values["schedule"]
    configuration.authentication = visible
    configuration.secrets_encrypted = encrypt_json(secret_key, hidden) if hidden else None


def _split_authentication(authentication: dict) -> tuple[dict, dict]:
    """Separate what may be shown from what must be encrypted."""
    visible = {k: v for k, v in authentication.items() if k not in SECRET_FIELDS and v is not None}
    if isinstance(visible.get("refresh_token_expires_at"), datetime):
        visible["refresh_token_expires_at"] = visible["refresh_token_expires_at"].isoformat()
    hidden = {k: authentication[k] for k in SECRET_FIELDS if authentication.get(k)}
    return visible, hidden


def _with_endpoint_ids(endpoints: list[dict], previous: list[dict]) -> list[dict]:
    """An endpoint keeps its id while its URL stays (its health and attempts are found by it)."""
    known = {endpoint["url"]: endpoint["id"] for endpoint in previous}
    return [{"id": known.get(e["url"]) or new_id("ep"), "url": e["url"], "active": e["active"]} for e in endpoints]


# --- rules that span fields, checked on the whole of a create or a merged patch -------------


async def _check(values: dict[str, Any], settings: Settings) -> None:
    if values["mode"] == "realtime":
        _check_realtime(values)
    else:
        _check_scheduled(values)
    await _check_urls(values, settings)


def _check_realtime(values: dict[str, Any]) -> None:
    if not values["endpoints"]:
        raise InvalidInput.at(["endpoints"], "a realtime configuration needs at least one endpoint")
    if values.get("schedule"):
        raise InvalidInput.at(["schedule"], "only scheduled configurations have a schedule")


def _check_scheduled(values: dict[str, Any]) -> None:
    if not values.get("schedule"):
        raise InvalidInput.at(["schedule"], "a scheduled configuration needs a schedule")
    if values["format"] != "json":
        raise InvalidInput.at(["format"], "scheduled delivery writes JSON files only")
    if values.get("throttle"):
        raise InvalidInput.at(["throttle"], "throttling applies to realtime delivery only")
    try:
        next_fire_times(values["schedule"], datetime.now(UTC), 1)
    except InvalidSchedule as exc:
        raise InvalidInput.at(["schedule", exc.field], exc.message) from None


async def _check_urls(values: dict[str, Any], settings: Settings) -> None:
    """Endpoints and the OAuth token URL must pass the SSRF guard (and be https when required)."""
    urls = [(["endpoints", index, "url"], endpoint["url"]) for index, endpoint in enumerate(values["endpoints"])]
    if values["authentication"].get("type") == "oauth2":
        urls.append((["authentication", "token_url"], values["authentication"]["token_url"]))
    for loc, url in urls:
        try:
            await check_url(url, settings.private_networks, settings.require_https)
        except UrlRefused as exc:
            raise InvalidInput.at(loc, str(exc)) from None
