"""The systemd input on real journal files (written by systemd-journal-remote, read through
libsystemd): matches, <entry>, the cursor in Fluentd's storage JSON, restarts, following appends,
read_from_head false, a missing journal folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver
from kawa.testing.journal import append_entries

T_US = 1_764_000_000_000_000


def unit(name: str, message: str, **more: str) -> dict[str, str]:
    return {"MESSAGE": message, "_SYSTEMD_UNIT": name, "_HOSTNAME": "node-1", "PRIORITY": "6", **more}


def read(conf: str, want: int, then: Any = None, settle: float = 0.3) -> InputDriver:
    d = InputDriver("systemd", "tag node\n" + conf)

    async def go() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.events) >= want, 10)
            if then is not None:
                then()
                await d.wait_for(lambda: len(d.events) >= want + then.adds, 10)
            await asyncio.sleep(settle)        # nothing more comes

    asyncio.run(go())
    return d


def test_matches_entry_mapping_and_the_cursor_in_fluentds_storage_json(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    append_entries(journal / "system.journal", [
        unit("kubelet.service", "started"), unit("sshd.service", "login"),
        unit("containerd.service", "pulled"), unit("kubelet.service", "line one\nline two")], T_US)
    cursor = tmp_path / "state" / "kubelet-cursor.json"
    d = read(f'path {journal}\nread_from_head true\n'
             'matches [{"_SYSTEMD_UNIT": "kubelet.service"}, {"_SYSTEMD_UNIT": "containerd.service"}]\n'
             '<entry>\nfield_map {"MESSAGE": "log", "_SYSTEMD_UNIT": "unit"}\nfields_strip_underscores true\n'
             f'fields_lowercase true\n</entry>\n<storage>\n@type local\npath {cursor}\n</storage>\n', 3)
    assert [(tag, t) for tag, t, _r in d.events] == [("node", T_US * 1000), ("node", (T_US + 2) * 1000),
                                                     ("node", (T_US + 3) * 1000)]
    assert [r["log"] for r in d.records] == ["started", "pulled", "line one\nline two"]
    assert d.records[0] == {"log": "started", "unit": "kubelet.service", "hostname": "node-1", "priority": "6",
                            "boot_id": "0123456789abcdef0123456789abcdef"}
    saved = json.loads(cursor.read_text())
    assert list(saved) == ["journal"] and saved["journal"].startswith("s=") and ";i=4;" in saved["journal"]          # (the sequence number, in hex)


def test_a_restart_reads_only_what_came_after_the_saved_cursor(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    append_entries(journal / "system.journal", [unit("a.service", f"first {i}") for i in range(3)], T_US)
    conf = f"path {journal}\nread_from_head true\n<storage>\npath {tmp_path / 'cursor.json'}\n</storage>\n"
    assert len(read(conf, 3).events) == 3
    append_entries(journal / "system.journal", [unit("a.service", f"second {i}") for i in range(2)], T_US + 10)
    d = read(conf, 2)
    assert [r["MESSAGE"] for r in d.records] == ["second 0", "second 1"]


def test_entries_appended_while_running_arrive(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    append_entries(journal / "system.journal", [unit("a.service", "before")], T_US)

    def append() -> None:
        append_entries(journal / "system.journal", [unit("a.service", f"live {i}") for i in range(1500)], T_US + 5)
    append.adds = 1500      # type: ignore[attr-defined]

    d = read(f"path {journal}\nread_from_head true\n", 1, append)
    messages = [r["MESSAGE"] for r in d.records]
    assert messages == ["before"] + [f"live {i}" for i in range(1500)]
    assert d.instance.stats()["emits"] >= 3          # 1,000 entries an emit at most


def test_without_read_from_head_the_newest_entry_comes_first_as_in_the_plugin(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    append_entries(journal / "system.journal", [unit("a.service", f"old {i}") for i in range(5)], T_US)
    d = read(f"path {journal}\n", 1)
    assert [r["MESSAGE"] for r in d.records] == ["old 4"]
    assert any("Using on-memory store" in line for line in d.logs)


def test_a_missing_journal_folder_is_retried_with_a_warning(tmp_path: Path) -> None:
    journal = tmp_path / "later"

    def create() -> None:
        journal.mkdir()
        append_entries(journal / "system.journal", [unit("a.service", "finally")], T_US)
    create.adds = 1         # type: ignore[attr-defined]

    d = InputDriver("systemd", f"tag node\npath {journal}\nread_from_head true\n")

    async def go() -> None:
        async with d.run():
            await asyncio.sleep(1.5)
            create()
            await d.wait_for(lambda: len(d.events) == 1, 10)

    asyncio.run(go())
    assert d.records[0]["MESSAGE"] == "finally"


def test_memory_cursor_with_read_from_head_warns_that_every_start_reads_it_all() -> None:
    d = InputDriver("systemd", "tag node\npath /nonexistent\nread_from_head true\n")
    assert any("every start reads the whole journal again" in line for line in d.logs), d.logs


@pytest.mark.parametrize("conf, message", [
    ("matches {\"a\": 1}", "matches: expected an array of hashes"),
    ("<storage>\npersistent true\n</storage>", "Plugin @id or path for <storage> required when 'persistent' is true"),
    ('<entry>\nfield_map {"A": 1}\n</entry>', "`field_map` values must be strings or an array of strings"),
])
def test_configuration_errors(conf: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        InputDriver("systemd", "tag node\n" + conf)


def test_a_broken_storage_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "cursor.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="Invalid contents"):
        InputDriver("systemd", f"tag node\n<storage>\npath {bad}\n</storage>\n")


def test_the_old_pos_file_keeps_the_cursor_as_plain_text(tmp_path: Path) -> None:
    """fluent-plugin-systemd 0.x's pos_file (the archived v0.12 daemonset images use it): kawa keeps
    the cursor there, with the deprecation warning, rather than read the journal again at each start."""
    journal = tmp_path / "journal"
    journal.mkdir()
    append_entries(journal / "system.journal", [unit("a.service", f"first {i}") for i in range(2)], T_US)
    pos = tmp_path / "journald.pos"
    conf = f"path {journal}\nread_from_head true\npos_file {pos}\nstrip_underscores true\n"
    d = read(conf, 2)
    assert pos.read_text().startswith("s=") and "SYSTEMD_UNIT" in d.records[0]
    assert any("'pos_file' parameter is deprecated" in str(w) for w in d.warnings)
    append_entries(journal / "system.journal", [unit("a.service", "second")], T_US + 10)
    assert [r["MESSAGE"] for r in read(conf, 1).records] == ["second"]


def test_a_journal_file_added_while_running_is_read(tmp_path: Path) -> None:
    """journald rotates by starting new files in the folder: their entries must be read too (sd-journal
    notices new files through its inotify descriptor, which kawa sets up)."""
    journal = tmp_path / "journal"
    journal.mkdir()
    append_entries(journal / "system.journal", [unit("a.service", "before rotation")], T_US)

    def rotate() -> None:
        append_entries(journal / "user-1000.journal", [unit("a.service", "in the new file")], T_US + 100)
    rotate.adds = 1         # type: ignore[attr-defined]

    d = read(f"path {journal}\nread_from_head true\n", 1, rotate)
    assert [r["MESSAGE"] for r in d.records] == ["before rotation", "in the new file"]


def test_a_cursor_gives_its_sequence_number_id_and_number() -> None:
    from kawa.plugins.inputs.systemd import _cursor_seqnum
    cursor = "s=a7169617acb64dca8e02e0da871f7a8a;i=12c;b=0123456789abcdef;m=f436b;t=6616ea804f815;x=2c80c4d74dd380d7"
    assert _cursor_seqnum(cursor) == ("a7169617acb64dca8e02e0da871f7a8a", 0x12C)
    assert _cursor_seqnum("b=0123;m=f436b") is None           # no sequence number: nothing skipped
    assert _cursor_seqnum("s=ab;i=zz") is None
