"""Delivery configurations: the rules that span fields, and the split of what is shown from what
is encrypted (passwords, client secret, refresh token, signing secret)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete as delete_rows
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.schemas import SECRET_FIELDS, DeliveryConfigurationCreate, DeliveryConfigurationUpdate
from services.api.store import deliveries, find_owned, saved, signing
from services.api.store.patch import merge_patch
from shared import tls
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import Delivery, DeliveryConfiguration, EndpointHealth
from shared.netguard import UrlRefused, check_url
from shared.schedules import InvalidSchedule, next_fire_times
from shared.security import decrypt_json, encrypt_json
from shared.settings import Settings
from shared.statuses import DeliveryStatus


async def find(session: AsyncSession, company_id: str, delivery_configuration_id: str,
               lock: bool = False) -> DeliveryConfiguration:
    """`lock` for a change made from what the row holds: the dispatcher may disable one of its
    endpoints meanwhile (services/dispatcher/health.py), and neither may undo the other."""
    return await find_owned(session, DeliveryConfiguration, company_id, delivery_configuration_id,
                            "delivery configuration", lock=lock)


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
    generated = None
    if "signing_secret" not in body.model_fields_set:  # `"signing_secret": null` asks for none
        values["signing_secret"] = generated = signing.new_signing_secret()
    await _check(values, settings)
    configuration = DeliveryConfiguration(id=new_id("dc"), company_id=company_id, endpoints=[])
    _write(configuration, values, settings.secret_key)
    if configuration.asymmetric_signing:
        await signing.company_key(session, company_id, settings.secret_key)
    configuration = await saved(session, configuration)
    configuration.generated_signing_secret = generated  # shown once, in this answer only
    audit.record(session, "delivery_configuration.create", "delivery_configuration", configuration.id,
                 after={**_audited(configuration),
                        "secrets": audit.secret_changes({}, secrets_of(configuration, settings.secret_key))})
    return configuration


async def update(session: AsyncSession, company_id: str, delivery_configuration_id: str,
                 patch: DeliveryConfigurationUpdate, settings: Settings) -> DeliveryConfiguration:
    """The merged result is checked as a whole, as a new configuration would be."""
    configuration = await find(session, company_id, delivery_configuration_id, lock=True)
    secrets_before = secrets_of(configuration, settings.secret_key)
    before = _current(configuration, secrets_before)
    audited_before = _audited(configuration)
    values = merge_patch(before, patch)
    await _check(values, settings)
    was_paused, was_inactive = configuration.paused, _inactive_endpoint_ids(configuration)
    had = {e["id"] for e in configuration.endpoints}
    _write(configuration, values, settings.secret_key)
    if configuration.asymmetric_signing:
        await signing.company_key(session, company_id, settings.secret_key)
    has = {e["id"] for e in configuration.endpoints}
    # Turned on again: a new spell from its next failure. Removed: nothing left to watch.
    await _forget_health(session, configuration, (was_inactive - _inactive_endpoint_ids(configuration)) | (had - has))
    if was_paused and not configuration.paused:
        await _release_held(session, configuration)
    old, new = audit.changed(audited_before, _audited(configuration))
    secrets = audit.secret_changes(secrets_before, secrets_of(configuration, settings.secret_key))
    audit.record(session, "delivery_configuration.update", "delivery_configuration", configuration.id,
                 before=old, after={**new, **({"secrets": secrets} if secrets else {})})
    return await saved(session, configuration)


async def set_paused(session: AsyncSession, company_id: str, delivery_configuration_id: str,
                     paused: bool) -> tuple[DeliveryConfiguration, int]:
    """Pause (events still match; their deliveries are held) or resume (held deliveries are
    released, oldest first). Returns the configuration and how many were released."""
    configuration = await find(session, company_id, delivery_configuration_id, lock=True)
    was_paused = configuration.paused
    released = 0
    if configuration.paused and not paused:
        configuration.paused = False
        released = await _release_held(session, configuration)
    configuration.paused = paused
    audit.record(session, f"delivery_configuration.{'pause' if paused else 'resume'}", "delivery_configuration",
                 configuration.id, before={"paused": was_paused},
                 after={"paused": paused, **({} if paused else {"released": released})})
    return await saved(session, configuration), released


async def enable_endpoint(session: AsyncSession, company_id: str, delivery_configuration_id: str,
                          endpoint_id: str, republish_failed: bool) -> tuple[DeliveryConfiguration, int]:
    """Turn an endpoint on again (after Event Manager or the company disabled it); with
    `republish_failed`, republish the configuration's deliveries that failed since it began
    failing (to the endpoints that did not have them yet). Returns the configuration and how many
    deliveries were republished."""
    configuration = await find(session, company_id, delivery_configuration_id, lock=True)
    endpoint = next((e for e in configuration.endpoints if e["id"] == endpoint_id), None)
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_id} does not exist in delivery configuration {configuration.id}")
    since = endpoint.get("failing_since") or endpoint.get("disabled_at")
    endpoint_before = copy.deepcopy(endpoint)
    configuration.endpoints = [{"id": e["id"], "url": e["url"], "active": True} if e["id"] == endpoint_id else e
                               for e in configuration.endpoints]
    await _forget_health(session, configuration, {endpoint_id})
    republished = 0
    if republish_failed and since:
        republished = await deliveries.requeue(session, company_id, [
            Delivery.status == DeliveryStatus.FAILED, Delivery.updated_at >= datetime.fromisoformat(since),
        ], delivery_configuration_id=configuration.id, keep_succeeded=True)
    audit.record(session, "delivery_configuration.endpoint_enable", "delivery_configuration", configuration.id,
                 before={"endpoint": endpoint_before},
                 after={"endpoint": {"id": endpoint_id, "url": endpoint["url"], "active": True},
                        "republish_failed": republish_failed, "republished": republished})
    return await saved(session, configuration), republished


async def delete(session: AsyncSession, company_id: str, delivery_configuration_id: str) -> None:
    """Its subscriptions go with it (ON DELETE CASCADE); past events and attempts stay."""
    configuration = await find(session, company_id, delivery_configuration_id)
    audit.record(session, "delivery_configuration.delete", "delivery_configuration", configuration.id,
                 before=_audited(configuration))
    await session.delete(configuration)


def _audited(configuration: DeliveryConfiguration) -> dict[str, Any]:
    """What the audit log keeps of a configuration: every field but its secrets (a copy, so a
    later change to the row cannot alter it)."""
    return copy.deepcopy({
        "name": configuration.name, "mode": configuration.mode, "active": configuration.active,
        "paused": configuration.paused, "endpoints": configuration.endpoints, "format": configuration.format,
        "throttle": configuration.throttle, "schedule": configuration.schedule,
        "authentication": configuration.authentication, "policy": configuration.policy,
        "asymmetric_signing": configuration.asymmetric_signing,
    })


def _current(configuration: DeliveryConfiguration, secrets: dict[str, str]) -> dict[str, Any]:
    """The stored configuration as a create body would give it, secrets decrypted."""
    return {
        "name": configuration.name,
        "mode": configuration.mode,
        "active": configuration.active,
        "paused": configuration.paused,
        "endpoints": [{"url": e["url"], "active": e["active"]} for e in configuration.endpoints],
        "format": configuration.format,
        "throttle": configuration.throttle,
        "schedule": configuration.schedule,
        "authentication": {**configuration.authentication,
                           **{k: v for k, v in secrets.items() if k in SECRET_FIELDS}},
        "signing_secret": secrets.get("signing_secret"),
        "asymmetric_signing": configuration.asymmetric_signing,
        "policy": _current_policy(configuration.policy, secrets),
    }


def _current_policy(policy: dict | None, secrets: dict) -> dict | None:
    if not policy:
        return None
    visible = {k: v for k, v in policy.items() if k != "header_names"}
    return {**visible, "headers": secrets.get("headers"), "ca_bundle": secrets.get("policy_ca_bundle")}


def _write(configuration: DeliveryConfiguration, values: dict[str, Any], secret_key: str) -> None:
    visible, hidden = _split_authentication(values["authentication"])
    if values["signing_secret"]:
        hidden["signing_secret"] = values["signing_secret"]
        before = decrypt_json(secret_key, configuration.secrets_encrypted)
        if before.get("signing_secret") == values["signing_secret"]:  # a rotation's grace period goes on
            hidden.update({k: before[k] for k in ("signing_secret_previous", "signing_previous_until") if k in before})
    configuration.asymmetric_signing = bool(values.get("asymmetric_signing"))
    configuration.policy = _split_policy(values.get("policy"), hidden)
    configuration.name = values["name"]
    configuration.mode = values["mode"]
    configuration.active = values["active"]
    configuration.paused = values["paused"]
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


def _split_policy(policy: dict | None, hidden: dict) -> dict | None:
    """The policy as stored: header values and the CA bundle go to the encrypted secrets."""
    if not policy:
        return None
    visible = {k: v for k, v in policy.items() if v is not None and k not in ("headers", "ca_bundle")}
    if policy.get("headers"):
        hidden["headers"] = policy["headers"]
        visible["header_names"] = list(policy["headers"])
    if policy.get("ca_bundle"):
        hidden["policy_ca_bundle"] = policy["ca_bundle"]
    return visible


def _with_endpoint_ids(endpoints: list[dict], previous: list[dict]) -> list[dict]:
    """An endpoint keeps its id while its URL stays (its health and attempts are found by it),
    and why Event Manager disabled it while it stays disabled."""
    known = {endpoint["url"]: endpoint for endpoint in previous}
    result = []
    for endpoint in endpoints:
        before = known.get(endpoint["url"], {})
        kept = {k: v for k, v in before.items() if k in DISABLED_FIELDS} if not endpoint["active"] else {}
        result.append({"id": before.get("id") or new_id("ep"), "url": endpoint["url"], "active": endpoint["active"],
                       **kept})
    return result


DISABLED_FIELDS = ("disabled_reason", "disabled_at", "failing_since")


def _inactive_endpoint_ids(configuration: DeliveryConfiguration) -> set[str]:
    return {e["id"] for e in configuration.endpoints if not e["active"]}


async def _forget_health(session: AsyncSession, configuration: DeliveryConfiguration, endpoint_ids: set[str]) -> None:
    """An endpoint turned on again starts a new failing spell from its next failure."""
    if endpoint_ids:
        await session.execute(delete_rows(EndpointHealth).where(
            EndpointHealth.delivery_configuration_id == configuration.id,
            EndpointHealth.endpoint_id.in_(endpoint_ids)))


async def _release_held(session: AsyncSession, configuration: DeliveryConfiguration) -> int:
    """The configuration row is written first: a dispatcher about to hold one of its deliveries
    reads that row FOR SHARE (services/dispatcher/recorder.py), so it either holds before this
    release and is released with the others, or sees the configuration resumed."""
    await session.flush()
    return await deliveries.release_held(session, configuration.company_id, configuration.id)


# --- rules that span fields, checked on the whole of a create or a merged patch -------------


async def _check(values: dict[str, Any], settings: Settings) -> None:
    if values["mode"] == "realtime":
        _check_realtime(values)
    else:
        _check_scheduled(values)
    _check_policy(values, settings)
    _check_tls(values)
    await _check_urls(values, settings)


def _check_policy(values: dict[str, Any], settings: Settings) -> None:
    policy = values.get("policy") or {}
    schedule = policy.get("retry_schedule")
    if schedule is not None:
        if len(schedule) + 1 > settings.retry_max_attempts:
            raise InvalidInput.at(["policy", "retry_schedule"], f"at most {settings.retry_max_attempts} attempts: "
                                  f"{settings.retry_max_attempts - 1} retries after the first")
        for index, delay in enumerate(schedule):
            if not settings.retry_min_delay_seconds <= delay <= settings.retry_max_delay_seconds:
                raise InvalidInput.at(["policy", "retry_schedule", index],
                                      f"each delay must be from {settings.retry_min_delay_seconds:g} to "
                                      f"{settings.retry_max_delay_seconds:g} seconds")
    authentication = values["authentication"]
    if authentication.get("type") == "api_key":
        clash = next((n for n in policy.get("headers") or {} if n.lower() == authentication["header_name"].lower()),
                     None)
        if clash:
            raise InvalidInput.at(["policy", "headers", clash], f"header {clash!r} carries the API key")


def _check_tls(values: dict[str, Any]) -> None:
    """PEM that does not load, a key that is not the certificate's, an expired certificate: 422."""
    authentication = values["authentication"]
    try:
        if authentication.get("type") == "mtls":
            tls.check(authentication["certificate"], authentication["private_key"], authentication.get("ca_bundle"))
    except tls.TlsMaterialInvalid as exc:
        raise InvalidInput.at(["authentication", exc.field], exc.message) from None
    ca_bundle = (values.get("policy") or {}).get("ca_bundle")
    try:
        tls.check(None, None, ca_bundle)
    except tls.TlsMaterialInvalid as exc:
        raise InvalidInput.at(["policy", "ca_bundle"], exc.message) from None


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
    if values.get("policy"):
        raise InvalidInput.at(["policy"], "a delivery policy applies to realtime delivery only")
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
