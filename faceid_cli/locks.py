"""An output folder's lock: one run at a time writes a given manifest.

The lock is an OS file lock (``fcntl.flock``) on a small file beside the manifest, so a run that is
killed leaves no stale lock: the kernel drops it with the process, and the re-run resumes. The file
keeps the holder's process id and host, so the second run can say who holds it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputInUseError


def lock_path(manifest: Path) -> Path:
    return manifest.with_name(f".{manifest.name}.lock")


@contextmanager
def hold_output_lock(manifest: Path, hint: str = "wait for it to finish, or split the work between runs with "
                                                 "--shard I/N") -> Iterator[Path]:
    """Hold the lock on ``manifest`` for the block; raise :class:`OutputInUseError` at once if
    another process holds it."""
    import fcntl

    path = lock_path(manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            raise OutputInUseError(f"'{manifest}' is being written by another faceid run{holder}", hint) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # closing drops the lock


@contextmanager
def output_folder(folder: Path, manifest: Path) -> Iterator[Path]:
    """Make ``folder`` for a run whose output lock is ``manifest``'s. If the run fails having
    written nothing there but that lock (bad data found before any work), the folder it made is
    removed again: a failed start leaves nothing behind. A folder that existed is left as it was."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        lock = lock_path(manifest)
        if created and all(entry == lock for entry in folder.iterdir()):
            lock.unlink(missing_ok=True)
            folder.rmdir()
        raise


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f" (process {holder['pid']} on {holder['host']})"
    except (ValueError, KeyError, TypeError):
        return ""
