"""Redis Cluster's key space: the slot of a key, hash tags, and the partitions that use them.

A Redis Cluster splits keys over 16384 slots, ``CRC16(key) mod 16384`` (XMODEM), where only the
part between the first ``{`` and the next ``}`` counts when that part is not empty (the hash tag):
keys with one tag live in one slot, on one shard, and one script may touch them all.

Where one script has to touch state of many users or videos at once (presence's node records,
the hot counters' push sweep), the state is split into a fixed number of partitions, each with
its own tag (Centrifugo does the same): a user or a channel always falls in the same partition,
and the partitions spread over the shards. With one partition (a single Redis) there is no tag
and the keys are what they always were.
"""

from __future__ import annotations

import zlib

SLOTS = 16384


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_part(key: bytes) -> bytes:
    """The part of ``key`` that decides its slot: the hash tag when there is one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    """The slot of ``key`` (what ``CLUSTER KEYSLOT`` answers)."""
    return crc16(hash_part(key)) % SLOTS


def partition_of(name: str, partitions: int) -> int:
    """Which of ``partitions`` partitions ``name`` (a user id, a channel) falls in."""
    if partitions <= 1:
        return 0
    return zlib.crc32(name.encode()) % partitions


def partition_prefix(base: str, partition: int, partitions: int) -> str:
    """The key prefix of one partition: ``base`` itself with one partition, else ``base{N}:``."""
    if partitions <= 1:
        return base
    return f"{base}{{{partition}}}:"
