"""pos_file: Fluentd's exact bytes both ways, in-place updates, compaction, unwatched entries."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kawa.plugins.inputs._tail.position_file import UNWATCHED_POSITION, PositionFile

paths = st.text(st.characters(blacklist_characters="\t\n\x00", blacklist_categories=("Cs",)), min_size=1,
                max_size=40).map(lambda s: "/" + s)
entries = st.dictionaries(paths, st.tuples(st.integers(0, 2**63), st.integers(0, 2**63)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(entries, st.data())
def test_round_trip_and_in_place_updates(initial: dict[str, tuple[int, int]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pos = os.path.join(tmp, "x.pos")
        pf = PositionFile(pos, False)
        pf.load()
        for path, (p, ino) in initial.items():
            pf.get(path, ino).update(ino, p)
        updates = data.draw(st.lists(st.tuples(st.sampled_from(sorted(initial)), st.integers(0, 2**63)),
                                     max_size=5)) if initial else []
        expected = dict(initial)
        for path, new_pos in updates:
            pf.entries[path].update_pos(new_pos)
            expected[path] = (new_pos, expected[path][1])
        pf.close()
        text = b"".join(os.fsencode(k) + b"\t%016x\t%016x\n" % v for k, v in expected.items())
        assert Path(pos).read_bytes() == text
        again = PositionFile(pos, False)
        again.load()
        assert {k: (e.pos, e.ino) for k, e in again.entries.items()} == expected
        again.try_compact()
        assert Path(pos).read_bytes() == text
        again.close()


def test_fluentd_written_file_is_compacted_as_fluentd_does(tmp_path: Path) -> None:
    pos = tmp_path / "f.pos"
    pos.write_bytes(b"/a\t0000000000000010\t0000000000000001\n"
                    b"garbage line\n"
                    b"/b\tffffffffffffffff\t0000000000000002\n"
                    b"/a\t0000000000000020\t0000000000000001\n"
                    b"/c\t0000000000000005\t0000000000000003\n")
    warnings: list[str] = []
    pf = PositionFile(str(pos), False, warn=warnings.append)
    pf.load({"/a"})          # /c no longer exists: dropped at load, like Fluentd's compact(existing)
    assert pos.read_bytes() == b"/a\t0000000000000020\t0000000000000001\n"
    assert "Unparsable line in pos_file: garbage line" in warnings
    entry = pf.get("/a", 1)
    assert (entry.pos, entry.ino) == (0x20, 1)
    pf.get("/new", 7).update(7, 3)
    pf.unwatch("/a", 1)
    pf.close()
    assert pos.read_bytes() == (b"/a\tffffffffffffffff\t0000000000000001\n"
                                b"/new\t0000000000000003\t0000000000000007\n")
    assert UNWATCHED_POSITION == 0xFFFFFFFFFFFFFFFF


def test_follow_inodes_keys_by_inode(tmp_path: Path) -> None:
    pos = tmp_path / "f.pos"
    pos.write_bytes(b"/a\t0000000000000010\t0000000000000009\n")
    pf = PositionFile(str(pos), True)
    pf.load({9})
    assert pf.get("/a.1", 9).pos == 0x10     # renamed file, same inode: same entry
    pf.try_compact()
    assert pos.read_bytes() == b"/a\t0000000000000010\t0000000000000009\n"
    pf.close()
