"""Settings refuse what would run insecurely or not at all."""

from __future__ import annotations

import pytest

from shared.settings import DEFAULT_RETRY_SCHEDULE, Settings

REAL = {"database_url": "postgresql://db/x", "kafka_bootstrap": "kafka:9092", "secret_key": "s" * 32}


def test_placeholder_and_short_secrets_are_refused():
    for secrets in ({"secret_key": "CHANGE-ME"}, {"admin_token": "short"}, {"admin_token": "CHANGE-ME-PLEASE-0000"}):
        with pytest.raises(SystemExit, match="real secret"):
            Settings(**{**REAL, **secrets}).require_runtime()
    Settings(**REAL, admin_token="t" * 24).require_runtime()


def test_missing_addresses_are_named():
    with pytest.raises(SystemExit, match="EM_KAFKA_BOOTSTRAP"):
        Settings(database_url="postgresql://db/x", secret_key="s" * 32).require_runtime()


def test_retry_schedule_from_the_environment(monkeypatch):
    monkeypatch.setenv("EM_RETRY_SCHEDULE", "0, 2.5,60")
    assert Settings().retry_schedule == [0, 2.5, 60]
    monkeypatch.delenv("EM_RETRY_SCHEDULE")
    assert Settings().retry_schedule == DEFAULT_RETRY_SCHEDULE
