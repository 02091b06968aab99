"""Database tables. Every company-owned row carries `company_id`, and every query for a
company filters on it (the api's finders take the company: `services/api/store/`), so a tenant
cannot reach another's data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.statuses import UNFINISHED_FILES, AttemptOutcome, BufferFileStatus, DeliveryStatus, sql_list


class Base(DeclarativeBase):
    pass


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    # Requests per minute per API key; None: EM_API_RATE_LIMIT_PER_MINUTE (shared/ratelimit.py).
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()


class Application(Base):
    __tablename__ = "applications"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    event_manager_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    api_key_digest: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    created_at: Mapped[datetime] = _created()


class Source(Base):
    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    topics: Mapped[list[str]] = mapped_column(ARRAY(String), nullable=False)
    token_digest: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    created_at: Mapped[datetime] = _created()
    # Migration 0016 (issue 16). After a rotation with overlap the previous token keeps working
    # until previous_token_expires_at; a disabled source's tokens are refused (403).
    previous_token_digest: Mapped[str | None] = mapped_column(String, unique=True)
    previous_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=sa_true())
    # The companies this source may publish for; None: any. Broadcast topics carry no company.
    company_ids: Mapped[list[str] | None] = mapped_column(ARRAY(String))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class ApiKey(Base):
    """A company's own API key (migration 0016, issue 16): it belongs to one of the company's
    applications (disabling the application refuses its keys), holds scopes
    (services/api/scopes.py), may expire, is revoked rather than deleted (the list shows it), and
    after a rotation with overlap its previous secret works until previous_expires_at."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String), nullable=False)
    key_digest: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    previous_key_digest: Mapped[str | None] = mapped_column(String, unique=True)
    previous_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint("scopes <@ ARRAY['read', 'write', 'bulk']::varchar[] AND cardinality(scopes) > 0",
                        name="ck_api_keys_scopes"),
    )


class Topic(Base):
    __tablename__ = "topics"
    name: Mapped[str] = mapped_column(String, primary_key=True)
    service: Mapped[str] = mapped_column(String, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    requires_event_type: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Broadcast topics carry no company: they fan out to every company that subscribes
    # (NIS-Events, filtered by monitored numbers).
    broadcast: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # What ingest does with data that violates an event type's schema: off, warn or enforce.
    validation_mode: Mapped[str] = mapped_column(String, nullable=False, default="off", server_default="off")
    __table_args__ = (CheckConstraint("validation_mode IN ('off', 'warn', 'enforce')",
                                      name="ck_topics_validation_mode"),)


class EventType(Base):
    __tablename__ = "event_types"
    topic: Mapped[str] = mapped_column(ForeignKey("topics.name", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    json_schema: Mapped[dict | None] = mapped_column(JSONB)
    example: Mapped[dict | None] = mapped_column(JSONB)


class DeliveryConfiguration(Base):
    __tablename__ = "delivery_configurations"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    mode: Mapped[str] = mapped_column(String, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Paused: events still match, their deliveries are held; resuming releases them.
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=sa_false())
    endpoints: Mapped[list[dict]] = mapped_column(JSONB, nullable=False, default=list)
    format: Mapped[str] = mapped_column(String, nullable=False, default="json")
    throttle: Mapped[dict | None] = mapped_column(JSONB)
    schedule: Mapped[dict | None] = mapped_column(JSONB)
    # `authentication` holds the non-secret part ({"type", "username", "token_url", ...});
    # `secrets_encrypted` the passwords, client secret, refresh token and signing secret.
    authentication: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    # Per-configuration delivery policy (headers, timeout, method, retry schedule); None: defaults.
    policy: Mapped[dict | None] = mapped_column(JSONB)
    # Also sign with the company's ed25519 key (`v1a`, beside the `v1` HMAC), migration 0014.
    asymmetric_signing: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                     server_default=sa_false())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(ForeignKey("topics.name"), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String), nullable=False, default=list)
    delivery_configuration_id: Mapped[str] = mapped_column(
        ForeignKey("delivery_configurations.id", ondelete="CASCADE"), index=True
    )
    matching_criteria: Mapped[dict | None] = mapped_column(JSONB)
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class MonitoredNumber(Base):
    __tablename__ = "monitored_numbers"
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[str] = mapped_column(String, primary_key=True)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (Index("ix_monitored_numbers_number", "number"),)


class Event(Base):
    """An event as one company sees it. A broadcast event is stored once per recipient company,
    so every read is a single-company query on `(company_id, ...)` indexes."""

    __tablename__ = "events"
    company_id: Mapped[str] = mapped_column(String, primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    topic: Mapped[str] = mapped_column(String, nullable=False)
    event_type: Mapped[str] = mapped_column(String, nullable=False)
    subject: Mapped[str | None] = mapped_column(String)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    data: Mapped[dict] = mapped_column(JSONB, nullable=False)
    # Set once the event's realtime deliveries are on Kafka: a replayed event whose flag is
    # still false had its fan-out interrupted, so the matcher publishes it again.
    fanned_out: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The W3C `traceparent` it arrived with (or ingest started): every attempt, retries too,
    # continues this trace (shared/tracing.py). Null for events stored before 0017.
    trace_parent: Mapped[str | None] = mapped_column(String)
    __table_args__ = (
        Index("ix_events_company_received", "company_id", "received_at", "id"),
        Index("ix_events_company_topic_received", "company_id", "topic", "received_at"),
        Index("ix_events_company_subject", "company_id", "subject"),
        Index("ix_events_received", "received_at"),
    )


class Delivery(Base):
    """One matched (event, subscription) pair and where it stands."""

    __tablename__ = "deliveries"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(String, nullable=False)
    event_id: Mapped[str] = mapped_column(String, nullable=False)
    subscription_id: Mapped[str] = mapped_column(String, nullable=False)
    delivery_configuration_id: Mapped[str] = mapped_column(String, nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False)
    attempt_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Non-null while the delivery waits in the database (a retry, or throttled overflow);
    # the dispatcher's retry poller puts it back on Kafka when it is due.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Endpoints that already answered 2xx, so a retry only goes to the ones that did not.
    succeeded_endpoints: Mapped[list[str]] = mapped_column(ARRAY(String), nullable=False, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    buffer_file_id: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(DeliveryStatus)})", name="ck_deliveries_status"),
        UniqueConstraint("company_id", "event_id", "subscription_id", name="uq_delivery_event_subscription"),
        Index("ix_deliveries_config_status", "delivery_configuration_id", "status"),
        Index("ix_deliveries_company_status", "company_id", "status", "event_id"),
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where="next_attempt_at IS NOT NULL",
        ),
        Index(
            "ix_deliveries_buffered",
            "delivery_configuration_id",
            "created_at",
            postgresql_where=f"status = '{DeliveryStatus.BUFFERED}' AND buffer_file_id IS NULL",
        ),
        Index("ix_deliveries_held", "delivery_configuration_id", "created_at",
              postgresql_where=f"status = '{DeliveryStatus.HELD}'"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    company_id: Mapped[str] = mapped_column(String, nullable=False)
    event_id: Mapped[str] = mapped_column(String, nullable=False)
    endpoint_url: Mapped[str] = mapped_column(Text, nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    duration_ms: Mapped[float] = mapped_column(nullable=False)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String, nullable=False)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    # The effective delivery policy of the attempt (timeout, method, retry schedule), so tracking
    # explains why a retry happened.
    policy: Mapped[dict | None] = mapped_column(JSONB)
    __table_args__ = (
        CheckConstraint(f"outcome IN ({sql_list(AttemptOutcome)})", name="ck_delivery_attempts_outcome"),
        Index("ix_attempts_company_event", "company_id", "event_id", "started_at"),
        Index("ix_attempts_endpoint_health", "company_id", "endpoint_url", "started_at"),
        Index("ix_attempts_started", "started_at"),
    )


class BufferFile(Base):
    __tablename__ = "buffer_files"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    delivery_configuration_id: Mapped[str] = mapped_column(String, nullable=False)
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False)
    event_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    object_key: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A window is written exactly once, whichever scheduler replica gets there first.
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(BufferFileStatus)})", name="ck_buffer_files_status"),
        UniqueConstraint("delivery_configuration_id", "window_end", name="uq_buffer_window"),
        Index("ix_buffer_files_unfinished", "attempted_at",
              postgresql_where=f"status IN ({sql_list(UNFINISHED_FILES)})"),
    )


class DeliveryStatusCount(Base):
    """Kept by database triggers on `deliveries` (migration 0004); never written by the code."""

    __tablename__ = "delivery_status_counts"
    delivery_configuration_id: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class DeliveryConfigurationActivity(Base):
    """Kept by the same triggers: the latest success and failure of each configuration."""

    __tablename__ = "delivery_configuration_activity"
    delivery_configuration_id: Mapped[str] = mapped_column(String, primary_key=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EndpointHealth(Base):
    """Kept by the dispatcher's recorder from the attempts it writes: since when an endpoint has
    failed without a success in between (NULL: healthy), and the longest failing time already
    announced to the company (services/dispatcher/health.py)."""

    __tablename__ = "endpoint_health"
    delivery_configuration_id: Mapped[str] = mapped_column(
        ForeignKey("delivery_configurations.id", ondelete="CASCADE"), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(String, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")  # in the current spell
    announced_seconds: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # by the watcher, last
    __table_args__ = (
        Index("ix_endpoint_health_failing", "failing_since",
              postgresql_where="failing_since IS NOT NULL OR announced_seconds > 0"),
    )


class NoticeClaim(Base):
    """When a notice sent at most once a period per configuration (delivery.exhausted,
    oauth.token_refused) was last sent, by whichever dispatcher replica sent it: the replicas
    share a configuration's deliveries, and the company gets one notice a period, not one per
    replica (services/dispatcher/health.py)."""

    __tablename__ = "notice_claims"
    delivery_configuration_id: Mapped[str] = mapped_column(
        ForeignKey("delivery_configurations.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # What replicas counted (exhausted deliveries) when another had sent the period's notice.
    pending: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class BulkAction(Base):
    __tablename__ = "bulk_actions"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    action: Mapped[str] = mapped_column(String, nullable=False)
    filter: Mapped[dict] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False)
    total: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    processed: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    cursor: Mapped[str | None] = mapped_column(String)
    error: Mapped[str | None] = mapped_column(Text)
    # A replay's counts: {"matched", "already_delivered", "created"} (migration 0010).
    result: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IngestId(Base):
    """An event id a source gave, with a digest of the event's content: the same source may send
    the same event again (accepted, delivered once); another source or other content is a 409."""

    __tablename__ = "ingest_ids"
    company_key: Mapped[str] = mapped_column(Text, primary_key=True)  # '' for broadcast events
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    source_id: Mapped[str] = mapped_column(Text, nullable=False)
    digest: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    received_at: Mapped[datetime] = _created()
    # By id alone: a broadcast event's id must not be one a company event already holds.
    __table_args__ = (Index("ix_ingest_ids_received", "received_at"), Index("ix_ingest_ids_id", "id"))


class ChangeOutbox(Base):
    """Change notifications written in the transaction of the change; the api's relay publishes
    them to `changes.v1` and deletes them."""

    __tablename__ = "change_outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    company_id: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()


class DeadLetter(Base):
    """A message or row a worker could not handle, set aside with its reason and original bytes
    (migration 0005; written by shared/deadletter.py, read by /v1/admin/dead-letters)."""

    __tablename__ = "dead_letters"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    service: Mapped[str] = mapped_column(String, nullable=False)
    source: Mapped[str] = mapped_column(String, nullable=False)
    company_id: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()
    requeued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_dead_letters_created", "created_at", "id"),)


class ConsoleSession(Base):
    """A web console session (`kind` session: its cookie's token, hashed) or a one-time console
    link an operator minted (`kind` link), migration 0011; see services/api/sessions.py."""

    __tablename__ = "console_sessions"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    kind: Mapped[str] = mapped_column(String, nullable=False)
    role: Mapped[str] = mapped_column(String, nullable=False)
    company_id: Mapped[str | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"),
                                                       index=True)
    # The API key's (or operator token's) digest at sign-in: a rotated key no longer matches.
    credential_digest: Mapped[str | None] = mapped_column(String)
    # A session signed in with a company API key (migration 0016): it has that key's scopes.
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    __table_args__ = (
        Index("ix_console_sessions_expires", "expires_at"),
        CheckConstraint("kind IN ('session', 'link')", name="ck_console_sessions_kind"),
        CheckConstraint("role IN ('company', 'operator')", name="ck_console_sessions_role"),
    )


class SigningKey(Base):
    """A company's ed25519 key for `v1a` signatures (migration 0014): the public key is published
    (`whpk_...`), the private key encrypted under EM_SECRET_KEY. One per company."""

    __tablename__ = "signing_keys"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), nullable=False)
    algorithm: Mapped[str] = mapped_column(String, nullable=False, default="ed25519", server_default="ed25519")
    public_key: Mapped[str] = mapped_column(Text, nullable=False)
    private_key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("company_id", name="uq_signing_keys_company_id"),)


class TestDelivery(Base):
    """A test event sent through a configuration (migration 0014): the api writes the row, the
    dispatcher sends once (no retries, no delivery row) and writes `attempts` here. Kept apart from
    deliveries so that no dashboard counter or event search ever sees it."""

    __tablename__ = "test_deliveries"
    __test__ = False  # not a pytest class
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    delivery_configuration_id: Mapped[str] = mapped_column(
        ForeignKey("delivery_configurations.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String, nullable=False)
    attempts: Mapped[list | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateLimitBucket(Base):
    """One token bucket of shared/ratelimit.py (migration 0015): a key's, a source token's or a
    client address's. UNLOGGED: a crash only forgets recent counts. Written by raw SQL only."""

    __tablename__ = "rate_limit_buckets"
    subject: Mapped[str] = mapped_column(String, primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    refilled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    __table_args__ = {"prefixes": ["UNLOGGED"]}


class AuditRecord(Base):

    """One change and who made it (migration 0015, issue 16). Append-only: rows are inserted and,
    past the retention period, deleted; never updated."""

    __tablename__ = "audit_log"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    company_id: Mapped[str | None] = mapped_column(String)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                  nullable=False)
    actor_kind: Mapped[str] = mapped_column(String, nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String)
    actor_name: Mapped[str | None] = mapped_column(String)
    client_address: Mapped[str | None] = mapped_column(String)
    action: Mapped[str] = mapped_column(String, nullable=False)
    resource_type: Mapped[str] = mapped_column(String, nullable=False)
    resource_id: Mapped[str | None] = mapped_column(String)
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
    __table_args__ = (
        Index("ix_audit_log_company_occurred", "company_id", "occurred_at", "id"),
        Index("ix_audit_log_occurred", "occurred_at", "id"),
    )
