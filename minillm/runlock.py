"""The run lock: one process at a time writes into a run folder.

Two ``finetune`` runs started on one ``--out`` would both find it empty, and then replace each
other's files (and interleave their log lines). So a process that trains, resumes or converts
into a folder first takes an advisory lock on ``<folder>/.minillm.lock`` and holds it for as
long as it writes there:

* the lock is ``flock(LOCK_EX | LOCK_NB)``: a second process is refused at once, and the message
  gives the holder's pid and command, which the holder wrote into the file;
* the kernel drops the lock when its process dies, however it dies. A clean exit also removes
  the file, so a lock file that can be taken but still names another pid was left by a process
  that ended without cleaning up (killed, crashed): it is taken over, and the takeover reported;
* the lock is per process and re-entrant: a command that locks a folder, then calls code that
  locks it again (the Trainer inside ``finetune``), holds it once.

Removing the file while another process waits to open it is the classic race of lock files:
the waiter could lock the removed file while a third process locks a new one. So after locking,
``acquire`` checks that the path still names the file it locked, and starts again if not.
Under MPI only rank 0 writes files, so only rank 0 locks (``minillm.cli.folders``).
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import shlex
import sys
import time

from .files import mode_for

LOCK_NAME = ".minillm.lock"


class RunLockedError(ValueError):
    """The folder is locked by another running process; the message names its pid and command."""


class RunLock:
    """The lock this process holds on one folder (see the module docstring); from ``acquire``."""

    def __init__(self, folder: str, fd: int, created: str | None):
        self.folder, self.path, self.fd = folder, os.path.join(folder, LOCK_NAME), fd
        self.created, self.count = created, 1

    def release(self) -> None:
        """Give the lock up (the last release of a re-entrant lock removes the file, then unlocks).

        The folders that ``acquire`` created, if still empty, are removed too: a command that
        failed before writing leaves nothing behind.
        """
        self.count -= 1
        if self.count > 0:
            return
        _HELD.pop(self.folder, None)
        try:
            if _same_file(self.fd, self.path):
                os.remove(self.path)
        finally:
            os.close(self.fd)  # closing the descriptor drops the flock
        _remove_created(self.folder, self.created)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


_HELD: dict[str, RunLock] = {}  # folder (real path) -> this process's lock on it


def acquire(folder: str, command: str | None = None) -> RunLock:
    """Lock ``folder`` (created if missing) for this process; returns the lock to ``release``.

    Args:
        command: what the holder is doing, shown to a refused process (default: this process's
            command line).

    Raises:
        RunLockedError: another live process holds the lock (its pid and command are named).
    """
    created = _first_missing(folder)
    os.makedirs(folder, exist_ok=True)
    real = os.path.realpath(folder)
    created = created and os.path.realpath(created)
    if real in _HELD:
        _HELD[real].count += 1
        return _HELD[real]
    path = os.path.join(real, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode_for(real))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            _remove_created(real, created)
            raise RunLockedError(f"{folder} is in use by another minillm process (pid {holder.get('pid', '?')}: "
                                 f"{holder.get('command', 'unknown command')}); nothing was changed. Wait for it "
                                 "to finish, or choose another folder") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed the file between our open and our lock: start again
    previous = _read_holder(fd)
    _write_holder(fd, command)
    if previous.get("pid") not in (None, os.getpid()):
        print(f"{folder}: took over the lock left by pid {previous['pid']} ({previous.get('command', '?')}), "
              "which ended without releasing it", file=sys.stderr)
    lock = _HELD[real] = RunLock(real, fd, created)
    return lock


def _same_file(fd: int, path: str) -> bool:
    """Does ``path`` still name the file open as ``fd``?"""
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> dict:
    """The pid and command written in the lock file (empty when there are none)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 65536).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_holder(fd: int, command: str | None) -> None:
    """Record this process as the holder: pid, command and start time."""
    text = json.dumps({"pid": os.getpid(), "command": command or shlex.join(sys.argv),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8"), 0)


def _first_missing(folder: str) -> str | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None: it exists)."""
    missing, path = None, os.path.abspath(folder)
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _remove_created(folder: str, created: str | None) -> None:
    """Remove ``folder`` and its parents up to ``created`` (what acquire made), while they are empty."""
    if created is None:
        return
    path = folder
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return  # not empty: a run wrote its files
        if path == created:
            return
        path = os.path.dirname(path)


def release_all() -> None:
    """Release every lock this process holds (the CLI's last step, whatever happened)."""
    for lock in list(_HELD.values()):
        lock.count = 1
        lock.release()


atexit.register(release_all)  # a process that exits normally removes its lock files
