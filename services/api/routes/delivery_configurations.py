"""Delivery configurations: where and how a company's events are delivered."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.api.changes import announce
from services.api.deps import Reader, SessionDep, SettingsDep, Writer, demand_scope
from services.api.schemas import (
    DeliveryConfigurationCreate,
    DeliveryConfigurationPublic,
    DeliveryConfigurationUpdate,
    EndpointEnable,
    EndpointEnabledPublic,
    ResumedPublic,
)
from services.api.store import delivery_configurations as store
from services.api.store import signing
from shared import tls
from shared.models import DeliveryConfiguration
from shared.settings import Settings

router = APIRouter(prefix="/v1/delivery-configurations", tags=["delivery configurations"])

# Which secrets each authentication type has; responses say `<name>_set: true|false` instead.
SECRET_FLAGS = {"basic": ("password",), "oauth2": ("client_secret", "password", "refresh_token"),
                "api_key": ("api_key",), "mtls": ("certificate", "private_key", "ca_bundle")}


def present(configuration: DeliveryConfiguration, settings: Settings) -> DeliveryConfigurationPublic:
    secrets = store.secrets_of(configuration, settings.secret_key)
    authentication = dict(configuration.authentication)
    for field in SECRET_FLAGS.get(authentication.get("type"), ()):
        authentication[f"{field}_set"] = bool(secrets.get(field))
    if authentication.get("type") == "mtls" and secrets.get("certificate"):
        authentication.update(tls.describe(secrets["certificate"]))  # so the company sees when to renew it
    return DeliveryConfigurationPublic(
        id=configuration.id,
        name=configuration.name,
        mode=configuration.mode,
        active=configuration.active,
        paused=configuration.paused,
        endpoints=configuration.endpoints,
        format=configuration.format,
        throttle=configuration.throttle,
        schedule=configuration.schedule,
        next_fire_times=store.upcoming_fire_times(configuration),
        authentication=authentication,
        **signing.shown(configuration, secrets),  # the generated secret only in the create answer
        policy=_policy(configuration.policy, secrets),
        created_at=configuration.created_at,
        updated_at=configuration.updated_at,
    )


def _policy(policy: dict | None, secrets: dict) -> dict | None:
    """Header values and the CA bundle are never shown: the header names, `ca_bundle_set`."""
    if not policy:
        return None
    return {"header_names": [], **policy, "ca_bundle_set": bool(secrets.get("policy_ca_bundle"))}


@router.post("", status_code=201, response_model=DeliveryConfigurationPublic, summary="Create a configuration",
             description="Nothing is delivered until `active` is true. Secrets are encrypted at rest and never "
                         "returned, but for a signing secret the server generated (`signing_secret` left out): "
                         "this answer shows it, once.")
async def create(body: DeliveryConfigurationCreate, request: Request, session: SessionDep,
                 caller: Writer, settings: SettingsDep):
    configuration = await store.create(session, caller.company_id, body, settings)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return present(configuration, settings)


@router.get("", response_model=list[DeliveryConfigurationPublic], summary="List configurations")
async def list_configurations(session: SessionDep, caller: Reader, settings: SettingsDep):
    """The company's delivery configurations; secrets appear only as `*_set` flags."""
    return [present(row, settings) for row in await store.list_all(session, caller.company_id)]


# The path parameter is `configuration_id` (not `delivery_configuration_id`): it names the
# field in 422 answers and the OpenAPI document, which callers already rely on.
@router.get("/{configuration_id}", response_model=DeliveryConfigurationPublic, summary="Get a configuration")
async def get(configuration_id: str, session: SessionDep, caller: Reader, settings: SettingsDep):
    """One configuration, with the next five fire times when it is scheduled."""
    return present(await store.find(session, caller.company_id, configuration_id), settings)


@router.patch("/{configuration_id}", response_model=DeliveryConfigurationPublic, summary="Change a configuration",
              description="Fields left out keep their value. `authentication`, when given, is replaced whole "
                          "(send its secrets again); `throttle: null` removes the throttle, "
                          "`signing_secret: null` the signing secret.")
async def update(configuration_id: str, body: DeliveryConfigurationUpdate, request: Request,
                 session: SessionDep, caller: Writer, settings: SettingsDep):
    configuration = await store.update(session, caller.company_id, configuration_id, body, settings)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return present(configuration, settings)


@router.post("/{configuration_id}/pause", response_model=DeliveryConfigurationPublic, summary="Pause delivery",
             description="The safe way to stop for a maintenance window: events still match and their "
                         "deliveries are kept with status `held`, nothing is sent, until `resume`. (Setting "
                         "`active: false` instead stops matching, and deliveries that come due meanwhile fail "
                         "with `the delivery configuration is not active`.) A scheduled configuration writes no "
                         "buffer file while paused; the next file after resuming holds what accumulated.")
async def pause(configuration_id: str, request: Request, session: SessionDep, caller: Writer,
                settings: SettingsDep):
    configuration, _ = await store.set_paused(session, caller.company_id, configuration_id, True)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return present(configuration, settings)


@router.post("/{configuration_id}/resume", response_model=ResumedPublic, summary="Resume delivery",
             description="Releases every held delivery, oldest first, at the configuration's throttle; each is "
                         "delivered once. `released` says how many.")
async def resume(configuration_id: str, request: Request, session: SessionDep, caller: Writer,
                 settings: SettingsDep):
    configuration, released = await store.set_paused(session, caller.company_id, configuration_id, False)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return ResumedPublic(configuration=present(configuration, settings), released=released)


@router.post("/{configuration_id}/endpoints/{endpoint_id}/enable", response_model=EndpointEnabledPublic,
             summary="Enable an endpoint again",
             description="Turns on an endpoint that Event Manager disabled (it answered 410 Gone, or failed "
                         "continuously for `EM_ENDPOINT_DISABLE_AFTER_SECONDS`) or that was set inactive. With "
                         "`republish_failed`, the configuration's deliveries that failed since the endpoint "
                         "began failing are delivered again; that also needs the `bulk` scope (it may deliver "
                         "many events at once), so `republish_failed: true` with a key that lacks it is a 403.",
             openapi_extra={"x-required-scope-when": {"republish_failed": "bulk"}})
async def enable_endpoint(configuration_id: str, endpoint_id: str, body: EndpointEnable, request: Request,
                          session: SessionDep, caller: Writer, settings: SettingsDep):
    if body.republish_failed:  # delivers again what failed: a bulk action, like republishing
        demand_scope(caller, "bulk", "that `republish_failed` requires")
    configuration, republished = await store.enable_endpoint(session, caller.company_id, configuration_id,
                                                             endpoint_id, body.republish_failed)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return EndpointEnabledPublic(configuration=present(configuration, settings), republished=republished)


@router.delete("/{configuration_id}", status_code=204, summary="Delete a configuration and its subscriptions")
async def delete(configuration_id: str, request: Request, session: SessionDep, caller: Writer):
    """Deletes the configuration and the subscriptions that use it; past events and attempts stay visible."""
    await store.delete(session, caller.company_id, configuration_id)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    return Response(status_code=204)
