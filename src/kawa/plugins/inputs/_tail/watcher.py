"""Change notification for tailed files: Linux inotify through ctypes, on directories (one watch
per directory, not per file, so 1,000 files in one folder cost one watch); callers fall back to
polling when inotify is unavailable.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Callable

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
DIR_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
            | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
NEW_NAME_MASK = IN_CREATE | IN_MOVED_TO
_HEADER = struct.Struct("iIII")      # wd, mask, cookie, len

# on_event(directory, name or "", mask); name "" with IN_Q_OVERFLOW means "look at everything".
EventCallback = Callable[[str, str, int], None]


class InotifyUnavailable(OSError):
    pass


def _libc() -> ctypes.CDLL:
    try:
        # the process's own symbols include libc's; ctypes.util.find_library would load shutil,
        # subprocess and tempfile (1.4 MiB resident) for the same answer
        lib = ctypes.CDLL(None, use_errno=True)
        if not hasattr(lib, "inotify_init1"):      # this libc has no inotify
            raise AttributeError("inotify_init1")
    except (OSError, AttributeError):
        from ctypes.util import find_library

        lib = ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
    lib.inotify_init1.argtypes = [ctypes.c_int]
    lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return lib


class DirectoryWatcher:
    """inotify on the directories holding tailed files; events are decoded per read, not per file."""

    def __init__(self, on_event: EventCallback) -> None:
        try:
            self._lib = _libc()
            fd = self._lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError) as exc:
            raise InotifyUnavailable(str(exc)) from exc
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyUnavailable(err, os.strerror(err))
        self.fd = fd
        self.on_event = on_event
        self._wd_to_dir: dict[int, str] = {}
        self._dir_to_wd: dict[str, int] = {}

    def watch(self, directory: str) -> bool:
        """Watch `directory` (idempotent). False when it cannot be watched (missing, ENOSPC...)."""
        if directory in self._dir_to_wd:
            return True
        wd = self._lib.inotify_add_watch(self.fd, os.fsencode(directory), DIR_MASK)
        if wd < 0:
            return False
        self._wd_to_dir[wd] = directory
        self._dir_to_wd[directory] = wd
        return True

    def unwatch(self, directory: str) -> None:
        wd = self._dir_to_wd.pop(directory, None)
        if wd is not None:
            self._wd_to_dir.pop(wd, None)
            self._lib.inotify_rm_watch(self.fd, wd)

    def watches(self, directory: str) -> bool:
        return directory in self._dir_to_wd

    @property
    def directories(self) -> set[str]:
        return set(self._dir_to_wd)

    def read_events(self) -> None:
        """Drain the inotify fd (called when it is readable) and report each event."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size
                raw_name = data[offset:offset + length].rstrip(b"\0")
                offset += length
                if mask & IN_Q_OVERFLOW:
                    self.on_event("", "", mask)
                    continue
                directory = self._wd_to_dir.get(wd)
                if directory is None:
                    continue
                if mask & IN_IGNORED:      # the directory went away; watch it again when it returns
                    self._wd_to_dir.pop(wd, None)
                    self._dir_to_wd.pop(directory, None)
                self.on_event(directory, os.fsdecode(raw_name), mask)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._wd_to_dir.clear()
        self._dir_to_wd.clear()
