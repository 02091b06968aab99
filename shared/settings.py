"""One typed configuration for every service, read from `EM_*` environment variables.

Unset `EM_DATABASE_URL` / `EM_KAFKA_BOOTSTRAP` mean "dev mode": `eventmgr dev` (or the test
session) starts embedded servers and passes their addresses down to the services it runs.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICE_PORTS = {"api": 8000, "ingest": 8001, "matcher": 8002, "dispatcher": 8003, "scheduler": 8004}

# Svix-style default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EM_", extra="ignore")

    database_url: str | None = None
    kafka_bootstrap: str | None = None
    media_url: str | None = None
    admin_token: str | None = None
    # A token that may read /metrics on the public api and ingest ports and nothing else (give
    # Prometheus this one, not the operator token, which also works there).
    metrics_token: str | None = None
    secret_key: str | None = None
    data_dir: Path = Path(".data")
    allowed_private_networks: str = ""
    # Endpoints and token URLs must be https (refused at the api and at delivery); on in production.
    require_https: bool = False

    host: str = "127.0.0.1"
    # The proxies (addresses or networks, comma-separated; "*" for any) whose X-Forwarded-For names
    # the client: behind an ingress, its pods' network, so each client has its own failed-
    # authentication budget (shared/ratelimit.py) and audit address instead of the ingress's.
    # Unset: uvicorn's own default (FORWARDED_ALLOW_IPS, else 127.0.0.1 and ::1).
    forwarded_allow_ips: str | None = None
    api_port: int = SERVICE_PORTS["api"]
    ingest_port: int = SERVICE_PORTS["ingest"]
    matcher_port: int = SERVICE_PORTS["matcher"]
    dispatcher_port: int = SERVICE_PORTS["dispatcher"]
    scheduler_port: int = SERVICE_PORTS["scheduler"]
    # The public base URL of the api service, used in buffer-file download links.
    public_api_url: str | None = None
    # Dispatcher processes `eventmgr dev` (make run) starts, as Kubernetes runs replicas: deliveries
    # are spread over the partitions (shared/messages.py delivery_key), so a second process puts
    # a second core to work on even one configuration's traffic.
    dev_dispatcher_processes: int = Field(2, ge=1, le=16)

    kafka_partitions: int = 12
    # Copies of each topic `eventmgr create-topics` makes: 1 for a single broker (the embedded
    # one, docker compose), 3 in production (deploy/k8s/overlays/production).
    kafka_replication_factor: int = 1
    kafka_topic_prefix: str = "em"

    # Comma-separated seconds, e.g. EM_RETRY_SCHEDULE=0,5,300
    retry_schedule: Annotated[list[float], NoDecode] = Field(default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE))
    retry_jitter: float = 0.2
    request_timeout_seconds: float = 10.0
    # Bounds of a delivery configuration's own policy.retry_schedule (422 outside them).
    retry_min_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 86_400.0
    retry_max_attempts: int = 20
    dispatcher_concurrency: int = 128
    # The smallest share of the above that one company's endpoint host gets; busy hosts share the
    # slots equally, so a slow endpoint holds its share and no more.
    endpoint_concurrency: int = 8
    circuit_failure_threshold: int = 5
    circuit_open_seconds: float = 30.0
    retry_poll_seconds: float = 1.0
    config_reconcile_seconds: float = 60.0
    scheduler_tick_seconds: float = 5.0
    retention_days: int = 30
    retention_interval_seconds: float = 3600.0
    # The most retained events one replay or simulation of a subscription may scan (422 beyond).
    replay_scan_limit: int = 100_000
    # Request limits (413 above them). The largest legitimate api body is 200,000 monitored
    # numbers (~4 MB); ingest takes 1000 events per request.
    api_max_body_bytes: int = 8 * 1024 * 1024
    ingest_max_body_bytes: int = 16 * 1024 * 1024
    # One event as encoded for Kafka (below the producer's 4 MiB request and the broker's limits).
    max_event_bytes: int = 256 * 1024
    # Nesting of any JSON body (orjson writes at most 254 levels).
    max_json_depth: int = 64
    # How often each api replica looks for change notifications left to relay (it is also woken
    # at once by its own commits).
    outbox_poll_seconds: float = 1.0
    # Shutdown budgets, each inside the next. A partition taken away in a rebalance gets
    # `revoke_drain_seconds` to finish its in-flight deliveries. On SIGTERM, uvicorn first waits
    # up to `graceful_shutdown_seconds` for open HTTP requests, then the service's loops get
    # `drain_seconds` to finish their work (the dispatcher's deliveries, then the recorder's
    # writes; the matcher's batch). Kubernetes' terminationGracePeriodSeconds (45 s in deploy/k8s,
    # after a 5 s preStop pause; tests/test_deploy.py checks it) and `eventmgr dev`'s stop wait
    # must cover the sum.
    revoke_drain_seconds: float = 8.0
    graceful_shutdown_seconds: float = 15.0
    drain_seconds: float = 12.0

    # Endpoint health (services/dispatcher/health.py). An endpoint that has failed without a
    # success for this long, with failures spread over the whole time (not one burst), is
    # disabled and the company told; a 410 Gone disables it at once. Svix's default: 5 days.
    endpoint_disable_after_seconds: float = 5 * 86400.0
    # `endpoint.failing` is announced once per failing spell at each of these (seconds).
    endpoint_failing_thresholds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [3600.0, 6 * 3600.0, 86400.0])
    health_check_seconds: float = 30.0

    # Rate limits (shared/ratelimit.py), per minute, shared by every replica: requests of each
    # company API key (a company's own limit, PATCH /v1/admin/companies/{id}, replaces this), of
    # each source token, and failed authentications (an unknown key or token) per client address.
    # A bucket refills its whole limit in `rate_limit_window_seconds`.
    api_rate_limit_per_minute: int = Field(6000, ge=1)
    ingest_rate_limit_per_minute: int = Field(60_000, ge=1)
    auth_failure_limit_per_minute: int = Field(300, ge=1)
    rate_limit_window_seconds: float = Field(60.0, gt=0)
    rate_limit_pool_size: int = 4

    # Web console sessions (services/api/sessions.py): ended after this long without a request,
    # and this long after sign-in whatever happens; a console link an operator mints is valid this
    # long by default (and once).
    console_idle_seconds: float = 8 * 3600.0
    console_max_seconds: float = 12 * 3600.0
    console_link_seconds: int = 300

    @field_validator("retry_schedule", "endpoint_failing_thresholds", mode="before")
    @classmethod
    def _split_schedule(cls, value):
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    def port_of(self, service: str) -> int:
        return getattr(self, f"{service}_port")

    @property
    def private_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.allowed_private_networks.split(",")
            if part.strip()
        ]

    @property
    def api_base_url(self) -> str:
        return (self.public_api_url or f"http://{self.host}:{self.api_port}").rstrip("/")

    def require_runtime(self) -> None:
        """Services need real addresses; dev mode fills them in before starting them."""
        missing = [name for name in ("database_url", "kafka_bootstrap", "secret_key") if not getattr(self, name)]
        if missing:
            env = ", ".join(f"EM_{name.upper()}" for name in missing)
            raise SystemExit(f"{env} must be set (or run `eventmgr dev`, which starts embedded servers)")
        for name in ("secret_key", "admin_token", "metrics_token"):
            value = getattr(self, name)
            if value is not None and (len(value) < 16 or "CHANGE-ME" in value):
                raise SystemExit(f"EM_{name.upper()} must be a real secret of at least 16 characters")


@lru_cache
def get_settings() -> Settings:
    return Settings()
