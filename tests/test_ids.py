"""Ids (shared/ids.py): 48 bits of milliseconds then 80 random bits in Crockford base32. The
encoding is pinned to what earlier releases produced: stored ids and cursors must keep sorting
with new ones."""

from unittest import mock

import pytest

from shared.ids import new_id


@pytest.mark.parametrize(("now", "randomness", "expected"), [
    (0.0, bytes(10), "evt_00000000000000000000000000"),
    (((1 << 48) - 1) / 1000, b"\xff" * 10, "evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ"),
    (1_764_280_000.123, bytes(range(1, 11)), "evt_01KB3MGQKV041061050R3GG28A"),
    (1_764_280_000.124, bytes(range(200, 210)), "evt_01KB3MGQKWS34WNJYCSQ7CZM6H"),
])
def test_encoding_is_stable(now, randomness, expected):
    with mock.patch("time.time", return_value=now), mock.patch("os.urandom", return_value=randomness):
        assert new_id("evt") == expected


def test_ids_sort_by_creation_time():
    ids = []
    for millis in (1_764_280_000_000, 1_764_280_000_001, 1_764_280_000_999, 1_764_280_001_000, 1_900_000_000_000):
        with mock.patch("time.time", return_value=millis / 1000):
            ids.append(new_id("dlv"))
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 30 and set(i[4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in ids)
