"""Event contracts: each event type may carry a JSON Schema and an example, and each topic says
how ingest treats data that violates the schema (off, warn, enforce).

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


# --- seeded contracts: a realistic schema and example for every event type seeded by 0002 and 0009.
# Schemas name what each event carries and leave room to grow (no additionalProperties: false);
# seeded topics keep validation_mode 'off' until an operator chooses otherwise.

S = {"type": "string", "maxLength": 1000}
ID = {"type": "string", "minLength": 1, "maxLength": 200}
E164 = {"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$"}
TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
URL = {"type": "string", "format": "uri", "maxLength": 2048}
NULLABLE_S = {"type": ["string", "null"], "maxLength": 1000}


def _obj(required: list[str], **properties) -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "required": required, "properties": properties}


def _message(extra_required=(), **extra) -> dict:
    return _obj(["message_id", "to", "from", *extra_required], message_id=ID, to=E164,
                **{"from": {"type": "string", "maxLength": 20}},
                channel={"enum": ["sms", "mms", "rcs"]}, segments={"type": "integer", "minimum": 1}, **extra)


def _call(extra_required=(), **extra) -> dict:
    return _obj(["call_id", "from", "to", *extra_required], call_id=ID, **{"from": E164}, to=E164,
                direction={"enum": ["inbound", "outbound"]}, **extra)


def _number(extra_required=(), **extra) -> dict:
    return _obj(["number", "changed_at", *extra_required], number=E164, changed_at=TIME,
                carrier=NULLABLE_S, line_type={"enum": ["mobile", "landline", "voip", "unknown"]}, **extra)


def _batch(extra_required=(), **extra) -> dict:
    return _obj(["batch_id", "job_name", *extra_required], batch_id=ID, job_name=S, input_file=URL, **extra)


def _endpoint(extra_required=(), **extra) -> dict:
    return _obj(["delivery_configuration_id", "endpoint_id", "url", *extra_required],
                delivery_configuration_id=ID, endpoint_id=ID, url=URL, **extra)


MSG = {"message_id": "msg_8812", "to": "+14155550100", "from": "ACME", "channel": "sms", "segments": 1}
CALL = {"call_id": "call_5521", "from": "+14155550111", "to": "+14155550100", "direction": "outbound"}
NUMBER = {"number": "+14155550100", "changed_at": "2026-11-02T09:30:00Z", "carrier": "Verizon Wireless",
          "line_type": "mobile"}
BATCH = {"batch_id": "bat_301", "job_name": "November reminders", "input_file": "https://media.example.com/in/301.csv"}
ENDPOINT = {"delivery_configuration_id": "dcf_01JD8Q", "endpoint_id": "ep_1", "url": "https://crm.example.com/hooks"}
FAILING = {"failing_since": {"type": ["string", "null"], "format": "date-time"}, "last_error": NULLABLE_S}

CONTRACTS = {
    ("SCG-Keyword", "keyword.matched"): (
        _obj(["keyword", "from", "to", "message_id"], keyword=S, **{"from": E164}, to={"type": "string"},
             message_id=ID, text={"type": "string", "maxLength": 1600}, campaign_id=ID),
        {"keyword": "PIZZA", "from": "+14155550100", "to": "55123", "message_id": "mo_9001", "text": "PIZZA please",
         "campaign_id": "cmp_spring"}),
    ("SCG-Keyword", "keyword.opt_out"): (
        _obj(["keyword", "from", "to"], keyword=S, **{"from": E164}, to={"type": "string"}, message_id=ID,
             program=S),
        {"keyword": "STOP", "from": "+14155550100", "to": "55123", "message_id": "mo_9002", "program": "alerts"}),
    ("SCG-Keyword", "keyword.opt_in"): (
        _obj(["keyword", "from", "to"], keyword=S, **{"from": E164}, to={"type": "string"}, message_id=ID,
             program=S),
        {"keyword": "START", "from": "+14155550100", "to": "55123", "message_id": "mo_9003", "program": "alerts"}),
    ("SCG-Sender ID", "sender_id.created"): (
        _obj(["sender_id", "value", "country"], sender_id=ID, value={"type": "string", "maxLength": 11},
             country={"type": "string", "pattern": "^[A-Z]{2}$"}, use_case=S),
        {"sender_id": "sid_77", "value": "ACME", "country": "GB", "use_case": "transactional"}),
    ("SCG-Sender ID", "sender_id.approved"): (
        _obj(["sender_id", "value", "country", "approved_at"], sender_id=ID, value={"type": "string", "maxLength": 11},
             country={"type": "string", "pattern": "^[A-Z]{2}$"}, approved_at=TIME),
        {"sender_id": "sid_77", "value": "ACME", "country": "GB", "approved_at": "2026-11-03T12:00:00Z"}),
    ("SCG-Sender ID", "sender_id.rejected"): (
        _obj(["sender_id", "value", "country", "reason"], sender_id=ID, value={"type": "string", "maxLength": 11},
             country={"type": "string", "pattern": "^[A-Z]{2}$"}, reason=S),
        {"sender_id": "sid_78", "value": "BANK", "country": "GB", "reason": "generic brand names are not allowed"}),
    ("SCG-Voice-Call", "call.initiated"): (_call(), CALL),
    ("SCG-Voice-Call", "call.answered"): (
        _call(["answered_at"], answered_at=TIME, answered_by={"enum": ["human", "machine", "unknown"]}),
        {**CALL, "answered_at": "2026-11-02T09:30:04Z", "answered_by": "human"}),
    ("SCG-Voice-Call", "call.completed"): (
        _call(["duration_seconds"], duration_seconds=COUNT, hangup_by={"enum": ["caller", "callee", "system"]},
              recording_url=URL),
        {**CALL, "duration_seconds": 73, "hangup_by": "callee"}),
    ("SCG-Voice-Call", "call.failed"): (
        _call(["reason"], reason={"enum": ["busy", "no_answer", "rejected", "invalid_number", "network_error"]},
              sip_code={"type": "integer", "minimum": 100, "maximum": 699}),
        {**CALL, "reason": "busy", "sip_code": 486}),
    ("SCG-Contact", "contact.created"): (
        _obj(["contact_id", "phone"], contact_id=ID, phone=E164, email={"type": "string", "maxLength": 320},
             first_name=S, last_name=S, consent={"type": "object", "properties": {"sms": {"type": "boolean"},
                                                                                  "voice": {"type": "boolean"}}}),
        {"contact_id": "ct_4410", "phone": "+14155550100", "first_name": "Ada", "last_name": "Lovelace",
         "consent": {"sms": True, "voice": False}}),
    ("SCG-Contact", "contact.updated"): (
        _obj(["contact_id", "changed"], contact_id=ID, phone=E164,
             changed={"type": "array", "items": {"type": "string"}, "minItems": 1}),
        {"contact_id": "ct_4410", "phone": "+14155550100", "changed": ["consent.voice"]}),
    ("SCG-Contact", "contact.deleted"): (
        _obj(["contact_id"], contact_id=ID, deleted_at=TIME),
        {"contact_id": "ct_4410", "deleted_at": "2026-11-05T16:20:00Z"}),
    ("SCG-Message", "message.sent"): (_message(["sent_at"], sent_at=TIME),
                                      {**MSG, "sent_at": "2026-11-02T09:30:00Z"}),
    ("SCG-Message", "message.delivered"): (
        _message(["delivered_at"], delivered_at=TIME, carrier=S),
        {**MSG, "delivered_at": "2026-11-02T09:30:02Z", "carrier": "T-Mobile"}),
    ("SCG-Message", "message.failed"): (
        _message(["error_code"], error_code={"type": "string", "maxLength": 50}, error_message=S, carrier=S),
        {**MSG, "error_code": "30003", "error_message": "Unreachable destination handset", "carrier": "AT&T"}),
    ("SCG-Message", "message.received"): (
        _message(["text", "received_at"], text={"type": "string", "maxLength": 1600}, received_at=TIME),
        {**MSG, "from": "+14155550100", "to": "+14155550111", "text": "Running 10 min late",
         "received_at": "2026-11-02T09:31:00Z"}),
    ("SCG-Communication-Assistant", "conversation.started"): (
        _obj(["conversation_id", "contact"], conversation_id=ID, contact=E164, channel={"enum": ["sms", "voice", "chat"]},
             assistant=S),
        {"conversation_id": "conv_120", "contact": "+14155550100", "channel": "sms", "assistant": "booking"}),
    ("SCG-Communication-Assistant", "conversation.closed"): (
        _obj(["conversation_id", "contact", "outcome"], conversation_id=ID, contact=E164,
             outcome={"enum": ["resolved", "abandoned", "handed_over"]}, messages=COUNT),
        {"conversation_id": "conv_120", "contact": "+14155550100", "outcome": "resolved", "messages": 6}),
    ("SCG-Communication-Assistant", "conversion.recorded"): (
        _obj(["conversation_id", "conversion"], conversation_id=ID, conversion=S,
             value={"type": "number", "minimum": 0}, currency={"type": "string", "pattern": "^[A-Z]{3}$"}),
        {"conversation_id": "conv_120", "conversion": "appointment_booked", "value": 49.0, "currency": "USD"}),
    ("NIS-Events", "number.ported"): (
        _number(["previous_carrier"], previous_carrier=NULLABLE_S),
        {**NUMBER, "previous_carrier": "AT&T Mobility"}),
    ("NIS-Events", "number.deactivated"): (_number(), {**NUMBER, "carrier": "Verizon Wireless"}),
    ("NIS-Events", "number.disconnected"): (_number(), {**NUMBER, "carrier": None, "line_type": "landline"}),
    ("NIS-Events", "number.reactivated"): (_number(), NUMBER),
    ("MSS-Messages", "file.stored"): (
        _obj(["url"], buffer_file_id=ID, file_id=ID, url=URL, event_count=COUNT, size_bytes=COUNT,
             delivery_configuration_id=ID, content_type=S),
        {"buffer_file_id": "bf_01JD9", "url": "https://em.example.com/v1/buffer-files/bf_01JD9/download",
         "event_count": 1280, "size_bytes": 734003, "delivery_configuration_id": "dcf_01JD8Q"}),
    ("MSS-Messages", "file.deleted"): (
        _obj(["file_id"], file_id=ID, url=URL, deleted_at=TIME),
        {"file_id": "file_552", "url": "https://media.example.com/f/552", "deleted_at": "2026-11-30T00:00:00Z"}),
    ("ABA-Messages", "batch.started"): (
        _batch(["started_at"], started_at=TIME, rows=COUNT),
        {**BATCH, "started_at": "2026-11-02T08:00:00Z", "rows": 25000}),
    ("ABA-Messages", "batch.completed"): (
        _batch(["completed_at", "processed"], completed_at=TIME, processed=COUNT, failed=COUNT, output_file=URL),
        {**BATCH, "completed_at": "2026-11-02T08:14:00Z", "processed": 24980, "failed": 20,
         "output_file": "https://media.example.com/out/301.csv"}),
    ("ABA-Messages", "batch.failed"): (
        _batch(["error"], error=S, failed_at=TIME),
        {**BATCH, "error": "row 14: column 'phone' is not a phone number", "failed_at": "2026-11-02T08:01:00Z"}),
    ("EM-Operations", "endpoint.failing"): (
        _endpoint(["failing_since"], **FAILING),
        {**ENDPOINT, "failing_since": "2026-11-02T08:00:00+00:00", "last_error": "HTTP 503"}),
    ("EM-Operations", "endpoint.disabled"): (
        _endpoint(["reason"], reason=S),
        {**ENDPOINT, "reason": "the endpoint answered 410 Gone"}),
    ("EM-Operations", "endpoint.recovered"): (
        _endpoint([], **FAILING),
        {**ENDPOINT, "failing_since": None, "last_error": None}),
    ("EM-Operations", "delivery.exhausted"): (
        _obj(["delivery_configuration_id", "delivery_id", "event", "attempts"], delivery_configuration_id=ID,
             delivery_id=ID, attempts={"type": "integer", "minimum": 1}, last_error=NULLABLE_S,
             event={"type": "object", "required": ["id", "topic", "event_type"],
                    "properties": {"id": ID, "topic": S, "event_type": S, "subject": NULLABLE_S}}),
        {"delivery_configuration_id": "dcf_01JD8Q", "delivery_id": "dlv_01JDA",
         "event": {"id": "msg-8812-delivered", "topic": "SCG-Message", "event_type": "message.delivered",
                   "subject": "+14155550100"}, "attempts": 8, "last_error": "HTTP 500"}),
    ("EM-Operations", "buffer_file.failed"): (
        _obj(["delivery_configuration_id", "buffer_file_id", "error"], delivery_configuration_id=ID,
             buffer_file_id=ID, error=S),
        {"delivery_configuration_id": "dcf_01JD8Q", "buffer_file_id": "bf_01JDB", "error": "media storage unavailable"}),
    ("EM-Operations", "oauth.token_refused"): (
        _obj(["delivery_configuration_id", "error"], delivery_configuration_id=ID, error=S),
        {"delivery_configuration_id": "dcf_01JD8Q", "error": "invalid_client: the client secret was rejected"}),
}


def upgrade() -> None:
    op.add_column("event_types", sa.Column("json_schema", postgresql.JSONB(), nullable=True))
    op.add_column("event_types", sa.Column("example", postgresql.JSONB(), nullable=True))
    op.add_column("topics", sa.Column("validation_mode", sa.String(), nullable=False, server_default="off"))
    op.create_check_constraint("ck_topics_validation_mode", "topics", "validation_mode IN ('off', 'warn', 'enforce')")
    event_types = sa.table("event_types", sa.column("topic"), sa.column("name"),
                           sa.column("json_schema", postgresql.JSONB()), sa.column("example", postgresql.JSONB()))
    for (topic, name), (schema, example) in CONTRACTS.items():
        op.execute(event_types.update()
                   .where(event_types.c.topic == topic, event_types.c.name == name)
                   .values(json_schema=schema, example=example))


def downgrade() -> None:
    op.drop_constraint("ck_topics_validation_mode", "topics")
    op.drop_column("topics", "validation_mode")
    op.drop_column("event_types", "example")
    op.drop_column("event_types", "json_schema")
