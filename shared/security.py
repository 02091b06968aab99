"""Secrets at rest: API keys and tokens are stored as SHA-256 digests (they are long random
strings, so a slow KDF adds nothing); endpoint credentials are encrypted with Fernet under a
key derived from `EM_SECRET_KEY`, because the dispatcher must be able to use them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

import orjson
from cryptography.fernet import Fernet, InvalidToken


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@lru_cache
def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()))


def encrypt_json(secret_key: str, value: dict) -> str:
    return _fernet(secret_key).encrypt(orjson.dumps(value)).decode()


def decrypt_json(secret_key: str, token: str | None) -> dict:
    if not token:
        return {}
    try:
        return orjson.loads(_fernet(secret_key).decrypt(token.encode()))
    except InvalidToken as exc:
        raise ValueError("stored secrets cannot be decrypted with this EM_SECRET_KEY") from exc
