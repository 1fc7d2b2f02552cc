from __future__ import annotations

from storage.ids import ID_LENGTH, IdGenerator, is_valid, timestamp_ms


def test_ids_sort_by_time_and_strictly_increase_within_a_millisecond() -> None:
    ids = IdGenerator()
    same_ms = [ids.new(1_700_000_000_000) for _ in range(1000)]
    assert same_ms == sorted(same_ms)
    assert len(set(same_ms)) == 1000
    later = ids.new(1_700_000_000_001)
    assert later > same_ms[-1]
    assert all(len(i) == ID_LENGTH and is_valid(i) for i in [*same_ms, later])
    assert timestamp_ms(later) == 1_700_000_000_001


def test_a_clock_step_back_keeps_order() -> None:
    ids = IdGenerator()
    first = ids.new(2_000_000)
    second = ids.new(1_000_000)
    assert second > first
    assert timestamp_ms(second) == 2_000_000


def test_is_valid_rejects_other_shapes() -> None:
    assert not is_valid("short")
    assert not is_valid("I" * ID_LENGTH)  # I, L, O, U are not in the alphabet
