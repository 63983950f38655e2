"""The cursor over ids drawn from a sequence by several writers: a row committed late,
below one already read, is still taken; a gap that never fills is given up after a
while; nothing is taken twice."""

from __future__ import annotations

from ringbearer._gap_cursor import GapCursor


def test_rows_in_order_are_taken_once_and_the_cursor_follows() -> None:
    cursor = GapCursor(0)
    assert cursor.fresh([1, 2, 3], now=0.0) == [1, 2, 3]
    assert cursor.cursor == 3 and cursor.wanted() == ([], 3)
    assert cursor.fresh([3], now=1.0) == []  # read again: not taken twice


def test_a_row_committed_after_a_higher_one_was_read_is_still_taken() -> None:
    """101 was read while 100 was not committed yet: 100 is awaited, then taken."""
    cursor = GapCursor(99)
    assert cursor.fresh([101, 102], now=0.0) == [101, 102]
    assert cursor.cursor == 99 and cursor.wanted() == ([100], 102)
    assert cursor.fresh([100, 103], now=5.0) == [100, 103]
    assert cursor.cursor == 103 and cursor.wanted() == ([], 103)


def test_a_gap_that_never_fills_is_given_up_after_the_patience() -> None:
    """A rolled-back insert leaves its id unused: waited for, then passed over."""
    cursor = GapCursor(0, patience=60.0)
    assert cursor.fresh([1, 3], now=0.0) == [1, 3]
    assert cursor.cursor == 1 and cursor.wanted() == ([2], 3)
    assert cursor.fresh([], now=59.0) == [] and cursor.cursor == 1
    assert cursor.fresh([4], now=60.0) == [4]
    assert cursor.cursor == 4 and cursor.wanted() == ([], 4)


def test_ids_at_or_below_the_cursor_are_never_new() -> None:
    cursor = GapCursor(10)
    assert cursor.fresh([9, 10, 11], now=0.0) == [11]
