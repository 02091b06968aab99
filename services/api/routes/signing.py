"""Signing: rotate, reveal and revoke a configuration's signing secret; publish the company's
ed25519 public key for `v1a` signatures."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.api.changes import announce
from services.api.deps import Reader, SessionDep, SettingsDep, Writer
from services.api.schemas import Strict, with_example
from services.api.store import signing as store

router = APIRouter(tags=["signing"])

MAX_GRACE_SECONDS = 7 * 24 * 3600


class Rotation(Strict):
    model_config = with_example({"grace_seconds": 86400})

    grace_seconds: int = Field(86_400, ge=0, le=MAX_GRACE_SECONDS, description="How long the previous secret "
                               "keeps signing beside the new one (0 s to 7 days; default 1 day)")


class RotatedSecret(BaseModel):
    signing_secret: str = Field(description="The new secret; shown only in this answer")
    previous_expires_at: datetime | None = Field(description="Until when deliveries also carry the previous "
                                                 "secret's signature; null when it stopped at once")


class RevealedSecret(BaseModel):
    signing_secret: str


class SigningState(BaseModel):
    signing_secret_set: bool
    signing_previous_expires_at: datetime | None


class PublicKey(BaseModel):
    id: str
    algorithm: str = Field(description="ed25519")
    public_key: str = Field(description="Standard Webhooks form: `whpk_` + base64 of the 32-byte raw key")
    created_at: datetime


SECRET = "/v1/delivery-configurations/{configuration_id}/signing-secret"


@router.post(f"{SECRET}/rotate", response_model=RotatedSecret, summary="Rotate the signing secret",
             description="Generates a new secret and answers it (the only time it is shown, but for `reveal`). "
                         "For `grace_seconds` every delivery carries both signatures, `v1,<new> v1,<previous>`, "
                         "so receivers can switch to the new secret without downtime.")
async def rotate(configuration_id: str, body: Rotation, request: Request, session: SessionDep, caller: Writer,
                 settings: SettingsDep):
    configuration, secret = await store.rotate(session, caller.company_id, configuration_id, body.grace_seconds,
                                               settings.secret_key)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()  # with its audit record (services/api/store/signing.py)
    expires = store.previous_expires_at(store.secrets_of(configuration, settings.secret_key))
    return RotatedSecret(signing_secret=secret, previous_expires_at=expires)


@router.post(f"{SECRET}/revoke-previous", response_model=SigningState, summary="End a rotation's grace period",
             description="The previous secret stops signing at once; deliveries carry the current one only.")
async def revoke_previous(configuration_id: str, request: Request, session: SessionDep, caller: Writer,
                          settings: SettingsDep):
    configuration = await store.revoke_previous(session, caller.company_id, configuration_id, settings.secret_key)
    announce(request, session, "delivery_configurations", caller.company_id)
    await session.commit()
    secrets = store.secrets_of(configuration, settings.secret_key)
    return SigningState(signing_secret_set=bool(secrets.get("signing_secret")),
                        signing_previous_expires_at=store.previous_expires_at(secrets))


@router.post(f"{SECRET}/reveal", response_model=RevealedSecret, summary="Show the signing secret again",
             description="Answers the current secret; each call is recorded in the audit log (who, when, which "
                         "configuration). "
                         "409 when the configuration has none (rotate to create one).")
async def reveal(configuration_id: str, session: SessionDep, caller: Writer, settings: SettingsDep):
    secret = await store.reveal(session, caller.company_id, configuration_id, settings.secret_key)
    await session.commit()  # the audit record of who saw it
    return RevealedSecret(signing_secret=secret)


@router.get("/v1/signing-keys", response_model=list[PublicKey], summary="The company's signing public keys",
            description="The ed25519 public key that verifies `v1a` signatures of configurations with "
                        "`asymmetric_signing` (`whpk_` + base64, as Standard Webhooks writes it). Made when first "
                        "asked for. A public key is no secret: give it to your receivers, which then verify "
                        "deliveries without holding any shared secret.")
async def signing_keys(session: SessionDep, caller: Reader, settings: SettingsDep):
    key = await store.company_key(session, caller.company_id, settings.secret_key)
    await session.commit()
    return [PublicKey(id=key.id, algorithm=key.algorithm, public_key=key.public_key, created_at=key.created_at)]
