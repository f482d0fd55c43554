"""The systemd journal read through libsystemd's sd-journal API (ctypes; what the systemd-journal
gem behind fluent-plugin-systemd binds with FFI). Loaded only by the systemd input.

One `Journal` is used from one thread at a time (sd-journal objects are not thread-safe).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

# sd_journal_process() results
NOP, APPEND, INVALIDATE = 0, 1, 2


class JournalError(Exception):
    """A libsystemd call failed (the message names the call and the errno's text)."""


_lib: Any = None


def _libsystemd() -> Any:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libsystemd.so.0", use_errno=True)
        except OSError as exc:
            raise JournalError(f"libsystemd.so.0 cannot be loaded ({exc}); the systemd input needs libsystemd "
                               "(Debian: libsystemd0)") from None
        c_j = ctypes.c_void_p
        for name, args in {
            "sd_journal_open_directory": (ctypes.POINTER(c_j), ctypes.c_char_p, ctypes.c_int),
            "sd_journal_close": (c_j,),
            "sd_journal_add_match": (c_j, ctypes.c_char_p, ctypes.c_size_t),
            "sd_journal_add_disjunction": (c_j,),
            "sd_journal_seek_head": (c_j,),
            "sd_journal_seek_tail": (c_j,),
            "sd_journal_seek_cursor": (c_j, ctypes.c_char_p),
            "sd_journal_test_cursor": (c_j, ctypes.c_char_p),
            "sd_journal_next": (c_j,),
            "sd_journal_previous_skip": (c_j, ctypes.c_uint64),
            "sd_journal_get_cursor": (c_j, ctypes.POINTER(ctypes.c_void_p)),
            "sd_journal_get_realtime_usec": (c_j, ctypes.POINTER(ctypes.c_uint64)),
            "sd_journal_restart_data": (c_j,),
            "sd_journal_enumerate_data": (c_j, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)),
            "sd_journal_set_data_threshold": (c_j, ctypes.c_size_t),
            "sd_journal_process": (c_j,),
            "sd_journal_get_fd": (c_j,),
        }.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = None if name in ("sd_journal_close", "sd_journal_restart_data") else ctypes.c_int
        libc = ctypes.CDLL(None)
        libc.free.argtypes = (ctypes.c_void_p,)
        lib.kawa_free = libc.free
        _lib = lib
    return _lib


def _check(result: int, call: str) -> int:
    if result < 0:
        raise JournalError(f"{call}: {os.strerror(-result)}")
    return result


class Journal:
    """An open journal directory: matches, seeks, entries in order, cursors."""

    def __init__(self, path: str) -> None:
        self._lib = _libsystemd()
        self._j = ctypes.c_void_p()
        _check(self._lib.sd_journal_open_directory(ctypes.byref(self._j), os.fsencode(path), 0),
               f"sd_journal_open_directory({path})")
        # fields come whole (libsystemd cuts them at 64 KiB by default): nothing is lost silently
        self._lib.sd_journal_set_data_threshold(self._j, 0)
        # inotify on the folder: without it `process()` never sees the files journald adds when it
        # rotates, and the entries written there would never be read (the gem's wait(0) sets it up)
        _check(self._lib.sd_journal_get_fd(self._j), "sd_journal_get_fd")
        self._data = ctypes.c_void_p()
        self._length = ctypes.c_size_t()
        self._usec = ctypes.c_uint64()
        self._skip: bytes | None = None    # seek_cursor's cursor, skipped by the next `next()`

    def close(self) -> None:
        if self._j:
            self._lib.sd_journal_close(self._j)
            self._j = ctypes.c_void_p()

    def match(self, conditions: list[dict[str, Any]]) -> None:
        """fluent-plugin-systemd's `matches`: the pairs of one hash all hold (a list value: any of
        its values), and any one hash is enough. Field names are upper-cased."""
        last = len(conditions) - 1
        for index, condition in enumerate(conditions):
            for field, value in condition.items():
                for one in value if isinstance(value, list) else [value]:
                    data = f"{str(field).upper()}={one}".encode()
                    _check(self._lib.sd_journal_add_match(self._j, data, len(data)), "sd_journal_add_match")
            if index != last:
                _check(self._lib.sd_journal_add_disjunction(self._j), "sd_journal_add_disjunction")

    def seek_head(self) -> None:
        _check(self._lib.sd_journal_seek_head(self._j), "sd_journal_seek_head")

    def seek_tail(self) -> None:
        """At the end such that the next `next()` gives the last entry (the plugin's seek to the tail
        followed by two steps back: it emits the newest entry at start)."""
        _check(self._lib.sd_journal_seek_tail(self._j), "sd_journal_seek_tail")
        _check(self._lib.sd_journal_previous_skip(self._j, 2), "sd_journal_previous_skip")

    def seek_cursor(self, cursor: str) -> None:
        """After the entry `cursor` names (read already). When that entry is gone (vacuumed), before
        the first entry that follows its place (new)."""
        raw = cursor.encode()
        _check(self._lib.sd_journal_seek_cursor(self._j, raw), "sd_journal_seek_cursor")
        self._skip = raw

    def next(self) -> bool:
        """Onto the next entry; False at the end."""
        moved = _check(self._lib.sd_journal_next(self._j), "sd_journal_next") > 0
        if moved and self._skip is not None:
            raw, self._skip = self._skip, None
            if _check(self._lib.sd_journal_test_cursor(self._j, raw), "sd_journal_test_cursor") > 0:
                return self.next()          # the entry of the saved cursor: read before the restart
        return moved

    def process(self) -> int:
        """NOP, APPEND or INVALIDATE (files were added or removed: open the journal again)."""
        return _check(self._lib.sd_journal_process(self._j), "sd_journal_process")

    def cursor(self) -> str:
        ptr = ctypes.c_void_p()
        _check(self._lib.sd_journal_get_cursor(self._j, ctypes.byref(ptr)), "sd_journal_get_cursor")
        try:
            return ctypes.string_at(ptr.value).decode()
        finally:
            self._lib.kawa_free(ptr)

    def realtime_ns(self) -> int:
        _check(self._lib.sd_journal_get_realtime_usec(self._j, ctypes.byref(self._usec)), "sd_journal_get_realtime_usec")
        return self._usec.value * 1000

    def fields(self) -> dict[str, str]:
        """The current entry's fields (values that are not UTF-8 keep their bytes as surrogates)."""
        lib, j, data, length = self._lib, self._j, self._data, self._length
        out: dict[str, str] = {}
        lib.sd_journal_restart_data(j)
        while _check(lib.sd_journal_enumerate_data(j, ctypes.byref(data), ctypes.byref(length)),
                     "sd_journal_enumerate_data") > 0:
            raw = ctypes.string_at(data.value, length.value)
            name, _sep, value = raw.partition(b"=")
            out[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        return out
