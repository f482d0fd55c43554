"""One process at a time on a piece of on-disk state: a tail pos_file, a file buffer's chunks.

Two collectors on one pos_file read the same lines twice and overwrite each other's offsets. Two
on one buffer directory flush and purge each other's chunks: the other one then retries a chunk
whose file is gone, and lines are doubled or lost. Fluentd catches this only inside one process
(the ConfigError for a pos_file or buffer path used twice, which kawa gives too: `claim_path`).
A second process (a second kawa pointed at the same hostPath, a DaemonSet pod overlapping its
successor) goes unnoticed there. kawa takes an flock(2) for as long as the state is open, and a
second process stops at start with the path and the holder:
- a pos_file: on the side file `<pos_file>.kawa-lock` (beside `.kawa-marks`); the pos_file itself
  is replaced on compaction, and a lock goes with its inode;
- a file buffer given a directory (`path /x/buf`): on the directory itself, so nothing of kawa's
  sits among the chunks; one given a pattern (`path /x/app.*.buf`): on `/x/app.kawa-lock`, as its
  directory may be shared.

- flock, not fcntl locks: a POSIX lock belongs to the process, and any close() of the same file
  anywhere in the process drops it.
- The kernel drops the lock when its process exits, kill -9 included, so there is no stale lock
  to clean up. A lock file is never removed: removing a lock file races with a process
  that has just opened it.
- Inside one process the locks are counted: on a reload (SIGHUP) the new pipeline starts while the
  old tail still holds its pos_file open for late settlements.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Any

from kawa.errors import ConfigError, KawaError

LOCK_SUFFIX = ".kawa-lock"

# lock file (absolute path) -> [fd, holders in this process]
_held: dict[str, list[int]] = {}


class StateInUse(KawaError):
    """Another process holds the lock on a pos_file or a buffer's chunks."""


def claim_path(ctx: Any, kind: str, path: str, owner: str, message: str) -> None:
    """Fluentd's in-process check: each pos_file / buffer path may be configured once.

    `kind` names the namespace ("pos_file", "buffer"), `owner` what configured it (a plugin id or
    type) and `message` the error, formatted with `other` (the first owner)."""
    claims = ctx.extras.setdefault("claimed_state_paths", {})
    key = (kind, os.path.abspath(path))
    if key in claims:
        raise ConfigError(message.format(other=claims[key]))
    claims[key] = owner


def acquire(lock_path: str, what: str, *, directory: bool = False) -> str:
    """Lock `lock_path` for this process; `what` names the state in the error. A file is created if
    missing and records the holder; `directory`: lock the directory itself (a buffer's chunk
    directory gets no file of kawa's among the chunks). Returns the absolute path to pass to
    `release`. Raises StateInUse when another process holds it."""
    lock_path = os.path.abspath(lock_path)
    entry = _held.get(lock_path)
    if entry is not None:
        entry[1] += 1
        return lock_path
    if directory:
        fd = os.open(lock_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _proc_locks_holder(fd) if directory else _file_holder(fd)
        os.close(fd)
        lock = f"lock on directory {lock_path}" if directory else f"lock file {lock_path}"
        raise StateInUse(f"{what} is in use by another process ({holder}; {lock}): two collectors on "
                         "the same state would read or send the same lines twice. Stop the other "
                         "process, or give this one its own path") from None
    except OSError:
        os.close(fd)
        raise
    if not directory:
        # who holds it, for the message of a process that finds it taken (hostname: the Pod's name)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    _held[lock_path] = [fd, 1]
    return lock_path


def release(lock_path: str) -> None:
    """Undo one `acquire`; the last one in the process closes the file (and so drops the lock)."""
    entry = _held.get(lock_path)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[lock_path]
        os.close(entry[0])


def _file_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def _proc_locks_holder(fd: int) -> str:
    """The pid holding an flock on `fd`'s inode, from /proc/locks (lines like
    `1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF`); a holder in another pid namespace (another
    Pod) may show as pid 0 or not at all."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
                    return f"pid {fields[4]}"
    except OSError:
        pass
    return "holder unknown"
