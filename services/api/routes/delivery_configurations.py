"""Delivery configurations: where and how a company's events are delivered."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from services.api.changes import announce
from services.api.deps import CompanyDep, SessionDep, SettingsDep
from services.api.schemas import (
    SECRET_FIELDS,
    DeliveryConfigurationCreate,
    DeliveryConfigurationPublic,
    DeliveryConfigurationUpdate,
)
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import DeliveryConfiguration
from shared.netguard import UrlRefused, check_url
from shared.schedules import InvalidSchedule, next_fire_times
from shared.security import decrypt_json, encrypt_json
from shared.settings import Settings

router = APIRouter(prefix="/v1/delivery-configurations", tags=["delivery configurations"])

# Which secrets each authentication type has; responses say `<name>_set: true|false` instead.
SECRET_FLAGS = {"basic": ("password",), "oauth2": ("client_secret", "password", "refresh_token")}


async def owned_configuration(session, company_id: str, configuration_id: str) -> DeliveryConfiguration:
    configuration = await session.get(DeliveryConfiguration, configuration_id)
    if configuration is None or configuration.company_id != company_id:
        raise NotFound(f"delivery configuration {configuration_id} does not exist")
    return configuration


def public(configuration: DeliveryConfiguration, settings: Settings) -> DeliveryConfigurationPublic:
    secrets = decrypt_json(settings.secret_key, configuration.secrets_encrypted)
    authentication = dict(configuration.authentication)
    for field in SECRET_FLAGS.get(authentication.get("type"), ()):
        authentication[f"{field}_set"] = bool(secrets.get(field))
    fire_times = None
    if configuration.mode == "scheduled" and configuration.schedule:
        try:
            fire_times = next_fire_times(configuration.schedule, datetime.now(UTC), 5)
        except (InvalidSchedule, TypeError, ValueError):
            fire_times = None  # a row an older release stored; the scheduler reports it as a dead letter
    return DeliveryConfigurationPublic(
        id=configuration.id,
        name=configuration.name,
        mode=configuration.mode,
        active=configuration.active,
        endpoints=configuration.endpoints,
        format=configuration.format,
        throttle=configuration.throttle,
        schedule=configuration.schedule,
        next_fire_times=fire_times,
        authentication=authentication,
        signing_secret_set=bool(secrets.get("signing_secret")),
        created_at=configuration.created_at,
        updated_at=configuration.updated_at,
    )


async def _validate(values: dict, settings: Settings) -> None:
    """Rules that span fields, checked on the merged result of a create or a patch."""
    mode = values["mode"]
    if mode == "realtime":
        if not values["endpoints"]:
            raise InvalidInput.at(["endpoints"], "a realtime configuration needs at least one endpoint")
        if values.get("schedule"):
            raise InvalidInput.at(["schedule"], "only scheduled configurations have a schedule")
    else:
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
    allowed = settings.private_networks
    for index, endpoint in enumerate(values["endpoints"]):
        try:
            await check_url(endpoint["url"], allowed, settings.require_https)
        except UrlRefused as exc:
            raise InvalidInput.at(["endpoints", index, "url"], str(exc)) from None
    authentication = values["authentication"]
    if authentication.get("type") == "oauth2":
        try:
            await check_url(authentication["token_url"], allowed, settings.require_https)
        except UrlRefused as exc:
            raise InvalidInput.at(["authentication", "token_url"], str(exc)) from None


def _split_authentication(authentication: dict) -> tuple[dict, dict]:
    """Separate what may be shown from what must be encrypted."""
    visible = {k: v for k, v in authentication.items() if k not in SECRET_FIELDS and v is not None}
    if isinstance(visible.get("refresh_token_expires_at"), datetime):
        visible["refresh_token_expires_at"] = visible["refresh_token_expires_at"].isoformat()
    hidden = {k: authentication[k] for k in SECRET_FIELDS if authentication.get(k)}
    return visible, hidden


def _with_endpoint_ids(endpoints: list[dict], previous: list[dict]) -> list[dict]:
    known = {endpoint["url"]: endpoint["id"] for endpoint in previous}
    return [{"id": known.get(e["url"]) or new_id("ep"), "url": e["url"], "active": e["active"]} for e in endpoints]


@router.post("", status_code=201, response_model=DeliveryConfigurationPublic, summary="Create a configuration",
             description="Nothing is delivered until `active` is true. Secrets are encrypted at rest and never "
                         "returned.")
async def create(body: DeliveryConfigurationCreate, request: Request, session: SessionDep,
                 caller: CompanyDep, settings: SettingsDep):
    values = body.model_dump()
    await _validate(values, settings)
    visible, hidden = _split_authentication(values["authentication"])
    if body.signing_secret:
        hidden["signing_secret"] = body.signing_secret
    configuration = DeliveryConfiguration(
        id=new_id("dc"),
        company_id=caller.company_id,
        name=body.name,
        mode=body.mode,
        active=body.active,
        endpoints=_with_endpoint_ids(values["endpoints"], []),
        format=body.format,
        throttle=values["throttle"],
        schedule=values["schedule"],
        authentication=visible,
        secrets_encrypted=encrypt_json(settings.secret_key, hidden) if hidden else None,
    )
    session.add(configuration)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    await session.refresh(configuration)
    return public(configuration, settings)


@router.get("", response_model=list[DeliveryConfigurationPublic], summary="List configurations")
async def list_configurations(session: SessionDep, caller: CompanyDep, settings: SettingsDep):
    """The company's delivery configurations; secrets appear only as `*_set` flags."""
    rows = await session.scalars(
        select(DeliveryConfiguration)
        .where(DeliveryConfiguration.company_id == caller.company_id)
        .order_by(DeliveryConfiguration.id)
    )
    return [public(row, settings) for row in rows]


@router.get("/{configuration_id}", response_model=DeliveryConfigurationPublic, summary="Get a configuration")
async def get(configuration_id: str, session: SessionDep, caller: CompanyDep, settings: SettingsDep):
    """One configuration, with the next five fire times when it is scheduled."""
    return public(await owned_configuration(session, caller.company_id, configuration_id), settings)


@router.patch("/{configuration_id}", response_model=DeliveryConfigurationPublic, summary="Change a configuration",
              description="Fields left out keep their value. `authentication`, when given, is replaced whole "
                          "(send its secrets again); `throttle: null` removes the throttle.")
async def update(configuration_id: str, body: DeliveryConfigurationUpdate, request: Request,
                 session: SessionDep, caller: CompanyDep, settings: SettingsDep):
    configuration = await owned_configuration(session, caller.company_id, configuration_id)
    changes = body.model_dump(exclude_unset=True)
    secrets = decrypt_json(settings.secret_key, configuration.secrets_encrypted)
    merged = {
        "mode": configuration.mode,
        "endpoints": [{"url": e["url"], "active": e["active"]} for e in configuration.endpoints],
        "format": configuration.format,
        "throttle": configuration.throttle,
        "schedule": configuration.schedule,
        "authentication": {**configuration.authentication, **{k: v for k, v in secrets.items() if k in SECRET_FIELDS}},
    }
    full = body.model_dump()  # nested objects with their defaults filled in
    for key in ("endpoints", "format", "throttle", "schedule", "authentication"):
        if key in changes:
            merged[key] = full[key]
    await _validate(merged, settings)
    if "name" in changes and changes["name"] is not None:
        configuration.name = changes["name"]
    if changes.get("active") is not None:
        configuration.active = changes["active"]
    configuration.endpoints = _with_endpoint_ids(merged["endpoints"], configuration.endpoints)
    configuration.format = merged["format"]
    configuration.throttle = merged["throttle"]
    configuration.schedule = merged["schedule"]
    visible, hidden = _split_authentication(merged["authentication"])
    signing_secret = changes.get("signing_secret", secrets.get("signing_secret"))
    if signing_secret:
        hidden["signing_secret"] = signing_secret
    configuration.authentication = visible
    configuration.secrets_encrypted = encrypt_json(settings.secret_key, hidden) if hidden else None
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    await session.refresh(configuration)
    return public(configuration, settings)


@router.delete("/{configuration_id}", status_code=204, summary="Delete a configuration and its subscriptions")
async def delete(configuration_id: str, request: Request, session: SessionDep, caller: CompanyDep):
    """Deletes the configuration and the subscriptions that use it; past events and attempts stay visible."""
    configuration = await owned_configuration(session, caller.company_id, configuration_id)
    await session.delete(configuration)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return Response(status_code=204)
