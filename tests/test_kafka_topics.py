"""What `eventmgr create-topics` asks the broker for (shared/kafka.py): the embedded broker has
one node, so replication factors above 1 are checked on the requests built, not on a cluster."""

from __future__ import annotations

from shared.kafka import Topics, missing_topics
from shared.settings import Settings


def test_replicated_topics_need_all_but_one_copy_in_sync():
    settings = Settings(kafka_partitions=24, kafka_replication_factor=3)
    topics = Topics.of(settings)
    wanted = {topic.name: topic for topic in missing_topics(settings, existing=set())}
    assert set(wanted) == {topics.events, topics.deliveries, topics.changes}
    for name, topic in wanted.items():
        assert topic.replication_factor == 3, name
        assert topic.topic_configs == {"min.insync.replicas": "2"}, name
    assert wanted[topics.events].num_partitions == wanted[topics.deliveries].num_partitions == 24
    assert wanted[topics.changes].num_partitions == 1
    five = missing_topics(Settings(kafka_replication_factor=5), existing=set())
    assert {topic.topic_configs["min.insync.replicas"] for topic in five} == {"4"}


def test_a_single_copy_keeps_the_broker_default_and_existing_topics_are_left_alone():
    settings = Settings(kafka_replication_factor=1)
    topics = Topics.of(settings)
    [changes] = missing_topics(settings, existing={topics.events, topics.deliveries})
    assert changes.name == topics.changes and changes.topic_configs == {}
    assert missing_topics(settings, existing={topics.events, topics.deliveries, topics.changes}) == []
