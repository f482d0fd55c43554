"""tail's Ticket.locate (follower.LineStarts): the file offset of an emitted record's line, for a
filter that holds it (concat keeps the checkpoint before it)."""

from __future__ import annotations

from kawa.plugins.inputs._tail.follower import LineStarts


def test_the_offset_of_a_record_is_its_lines_across_the_reads_of_the_emit() -> None:
    blocks = [(100, b"one\r\ntwo\n"), (109, b"three\n")]
    events = [(1, {"m": "one"}), (1, {"m": "two"}), (1, {"m": "three"})]
    locate = LineStarts(events, blocks)
    assert [locate(r) for _t, r in events] == [100, 105, 109]


def test_a_record_is_found_by_identity_not_by_an_equal_one() -> None:
    events = [(1, {"m": "same"}), (1, {"m": "same"})]
    locate = LineStarts(events, [(0, b"same\nsame\n")])
    assert locate(events[1][1]) == 5
    assert locate({"m": "same"}) is None          # a copy a filter made: not known


def test_unknown_when_lines_and_events_do_not_pair_up() -> None:
    # a decoding where b"\\n" is not a line end (UTF-16) gives another count of lines
    events = [(1, {"m": "a\\nb"})]
    assert LineStarts(events, [(0, b"a\nb\n")])(events[0][1]) is None
