"""Seed the topic catalog with the seed document's topics and realistic event types.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SMS_VOICE = "SMS and Voice Service"

TOPICS = [
    ("SCG-Keyword", SMS_VOICE, "Keyword events from mobile-originated messages", False, False, [
        ("keyword.matched", "An inbound message matched a configured keyword"),
        ("keyword.opt_out", "A subscriber sent an opt-out keyword such as STOP"),
        ("keyword.opt_in", "A subscriber sent an opt-in keyword"),
    ]),
    ("SCG-Sender ID", SMS_VOICE, "Sender ID provisioning and status", False, False, [
        ("sender_id.created", "A sender ID was created"),
        ("sender_id.approved", "A sender ID was approved for use"),
        ("sender_id.rejected", "A sender ID was rejected"),
    ]),
    ("SCG-Voice-Call", SMS_VOICE, "Outbound and inbound voice call progress", False, False, [
        ("call.initiated", "A call was placed"),
        ("call.answered", "The callee answered"),
        ("call.completed", "The call ended normally"),
        ("call.failed", "The call could not be completed"),
    ]),
    ("SCG-Contact", SMS_VOICE, "Contact records and their consent", False, False, [
        ("contact.created", "A contact was created"),
        ("contact.updated", "A contact was changed"),
        ("contact.deleted", "A contact was deleted"),
    ]),
    ("SCG-Message", SMS_VOICE, "Message lifecycle and delivery receipts", False, False, [
        ("message.sent", "A message was handed to the carrier"),
        ("message.delivered", "The handset confirmed delivery"),
        ("message.failed", "The message could not be delivered"),
        ("message.received", "A mobile-originated message arrived"),
    ]),
    ("SCG-Communication-Assistant", SMS_VOICE, "Conversation threads and assistant actions", False, False, [
        ("conversation.started", "A conversation thread started"),
        ("conversation.closed", "A conversation thread closed"),
        ("conversion.recorded", "A conversion was attributed to a conversation"),
    ]),
    ("NIS-Events", "Phone Number Verification Service",
     "Status changes of monitored phone numbers (proactive feed)", True, True, [
        ("number.ported", "The number moved to another carrier"),
        ("number.deactivated", "The number was deactivated"),
        ("number.disconnected", "The number was disconnected"),
        ("number.reactivated", "The number became active again"),
    ]),
    ("MSS-Messages", "Media Storage Service", "Files stored in the Media Storage Service", False, False, [
        ("file.stored", "A file was stored and can be downloaded"),
        ("file.deleted", "A file was deleted"),
    ]),
    ("ABA-Messages", "Batch Automation Service", "Batch job progress", False, False, [
        ("batch.started", "A batch job started processing its input file"),
        ("batch.completed", "A batch job finished and stored its output"),
        ("batch.failed", "A batch job failed"),
    ]),
]


def upgrade() -> None:
    topics = sa.table(
        "topics",
        sa.column("name"), sa.column("service"), sa.column("description"),
        sa.column("requires_event_type"), sa.column("broadcast"),
    )
    event_types = sa.table("event_types", sa.column("topic"), sa.column("name"), sa.column("description"))
    op.bulk_insert(topics, [
        {"name": name, "service": service, "description": description,
         "requires_event_type": requires, "broadcast": broadcast}
        for name, service, description, requires, broadcast, _ in TOPICS
    ])
    op.bulk_insert(event_types, [
        {"topic": name, "name": type_name, "description": type_description}
        for name, _, _, _, _, types in TOPICS
        for type_name, type_description in types
    ])


def downgrade() -> None:
    op.execute("DELETE FROM event_types")
    op.execute("DELETE FROM topics")
