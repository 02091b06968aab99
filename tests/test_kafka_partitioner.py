"""The producers' partitioner (shared/kafka.py) remembers each key's hash; it must place every
key where aiokafka's default partitioner (and Java's) does, or one configuration's deliveries
would be split between partitions and replicas (its throttle is exact only on one)."""

from aiokafka.partitioner import DefaultPartitioner

from shared.ids import new_id
from shared.kafka import keyed_partitioner


def test_same_partition_as_the_default_partitioner_for_every_key():
    default = DefaultPartitioner()
    keys = [new_id(prefix).encode() for prefix in ("cmp", "dc", "evt") for _ in range(2000)]
    keys += [b"", b"a", "é-ü".encode(), bytes(range(256))]
    for partitions in ([0], list(range(6)), list(range(24)), [3, 7, 11]):
        for key in keys:
            assert keyed_partitioner(key, partitions, partitions) == default(key, partitions, partitions), key
            assert keyed_partitioner(key, partitions, partitions) == keyed_partitioner(key, partitions, [])  # cached


def test_no_key_goes_to_an_available_partition():
    assert {keyed_partitioner(None, [0, 1, 2], [2]) for _ in range(50)} == {2}
    assert {keyed_partitioner(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
