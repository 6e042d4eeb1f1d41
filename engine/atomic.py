"""Writing files so that nothing is ever half-written under its final name, and nothing is left behind.

``write_atomic(path, write)`` writes into a temporary file beside ``path`` (named ``.NAME.PID@HOST.XXXXXXXX.part``),
fsyncs it, gives it the permissions the user expects (an overwritten file keeps its mode; a new one gets what the
umask gives, not mkstemp's 0600), renames it over ``path`` (atomic on POSIX and Windows) and fsyncs the folder.
A crash or a full disk leaves the old file, or none; the temporary files of writers that died (``kill -9``) are
removed by ``clean_stale_parts``, run once per folder and process before the first write there.
Images (engine.imageio), model weights and training states (engine.weights) and project files all write through it.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

STALE_PART_SECONDS = 15 * 60  # a temporary file untouched this long belongs to a dead writer (saving takes seconds)

_HOST = hashlib.blake2s(socket.gethostname().encode("utf-8", "replace"), digest_size=4).hexdigest()
# Ours: ".NAME.PID@HOST.XXXXXXXX.part" (and, from before PIDs were written, ".NAME.XXXXXXXX.part"): mkstemp's
# eight random characters, the NAME cut to 100 characters so a long file name still gets a temporary name.
_PART = re.compile(r"^\..+?\.(?:(?P<pid>\d+)@(?P<host>[0-9a-f]{8})\.)?[a-z0-9_]{8}\.part$")
_cleaned: set[str] = set()
_umask_lock = threading.Lock()


def part_prefix(path: Path) -> str:
    """The start of a temporary file's name for ``path``: ".NAME.PID@HOST." (mkstemp adds 8 characters and .part)."""
    return f".{path.name[:100]}.{os.getpid()}@{_HOST}."


def _umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        old = os.umask(0o022)
        os.umask(old)
    return old


def _target_mode(path: Path) -> int:
    """An overwritten file keeps its permissions; a new one gets what the user's umask gives (not mkstemp's 0600)."""
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~_umask()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be writing it
    if os.name != "posix":
        return True  # no cheap, harmless probe: age alone decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def clean_stale_parts(folder: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove the temporary files a killed or crashed save left in ``folder``: only files named as ours
    (``.NAME.PID@HOST.XXXXXXXX.part``), owned by this user, and certainly dead: written by a process of this host
    that no longer runs, or untouched for STALE_PART_SECONDS. Returns what was removed; never raises."""
    removed: list[Path] = []
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PART.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                continue
            age = now - st.st_mtime
            dead = m["pid"] is not None and m["host"] == _HOST and not _alive(int(m["pid"]))
            if age > STALE_PART_SECONDS or (dead and age > 2):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def write_atomic(path: str | os.PathLike, write: Callable) -> Path:
    """Write ``path`` through ``write(fh)`` (a binary file object) without ever exposing a partial file."""
    return _write(Path(path), lambda tmp, fh: write(fh))


def write_atomic_path(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """The same for writers that take a path (e.g. safetensors' save_file): ``write(tmp_path)``."""
    return _write(Path(path), lambda tmp, fh: write(Path(tmp)))


def _write(path: Path, write: Callable) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = str(path.parent.resolve())
    if folder not in _cleaned:  # once per folder and process: a big folder is not scanned on every save
        _cleaned.add(folder)
        clean_stale_parts(folder)
    mode = _target_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=part_prefix(path), suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(tmp, fh)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); best effort."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
