"""Autosave and the offer to restore after a crash.

While the editor runs, the work is written every ``INTERVAL_S`` seconds (when something changed) as a project file
(``engine.project``) into the autosave folder, on a background thread from owned copies, so painting never waits
for it. Each running editor holds a ``QLockFile`` beside its autosave; a clean close deletes both. At start-up
``offer_restore`` looks for autosaves whose lock no live editor holds (the process that wrote them ended without
closing: a crash, a kill, a power cut) and offers the newest one; declining deletes it.

The folder: ``INPAINT_STUDIO_AUTOSAVE`` if set, else the platform's application-data folder + ``/autosave``.
"""
from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, QStandardPaths, QTimer, Slot
from PySide6.QtWidgets import QMessageBox

from engine import project

ENV = "INPAINT_STUDIO_AUTOSAVE"
INTERVAL_S = 60


def autosave_folder() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "autosave"


class Autosave(QObject):
    def __init__(self, window, doc, files, interval_s: float = INTERVAL_S) -> None:
        super().__init__(window)
        self.window, self.doc, self.files = window, doc, files
        self.folder = autosave_folder()
        name = f"session-{uuid.uuid4().hex[:12]}"
        self.path = self.folder / f"{name}{project.SUFFIX}"
        self._lock: QLockFile | None = None
        self._dirty = False
        self._future: Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autosave")
        self.last_error: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = QLockFile(str(self.folder / f"{name}.lock"))
            self._lock.setStaleLockTime(0)  # only the owner's death makes it stale, never its age
            if not self._lock.tryLock(0):
                self._lock = None
        except OSError as exc:
            self.last_error = f"autosave folder {self.folder}: {exc.strerror or exc}"
        self._signals = (doc.layer_changed, doc.results_changed, doc.image_replaced, doc.undo_stack.indexChanged)
        for signal in self._signals:
            signal.connect(self._changed)
        self.timer = QTimer(self)
        self.timer.setInterval(int(interval_s * 1000))
        self.timer.timeout.connect(self.save_now)
        self.timer.start()

    @Slot()
    def _changed(self, *args) -> None:
        self._dirty = True

    @Slot()
    def save_now(self, wait: bool = False) -> bool:
        """Write the work if it changed since the last autosave (and nothing is being written); ``wait`` blocks
        until it is on disk. True when a write was started."""
        if self._lock is None or not self._dirty or self.doc.empty:
            return False
        if self._future is not None and not self._future.done():
            if wait:
                self._future.result()
            else:
                return False
        self._dirty = False
        self._future = self._pool.submit(self._write, self.doc.to_project())
        if wait:
            self._future.result()
        return True

    def _write(self, snapshot) -> None:
        try:
            project.save(self.path, snapshot)
            self.last_error = None
        except Exception as exc:  # a full disk must not take the editor down: the next change tries again
            self.last_error = str(exc)
            self._dirty = True

    def discard(self) -> None:
        """A clean close: nothing to restore. Waits for a write in flight, then removes the file and the lock.
        Disconnects from the document first: its undo stack emits while the window is torn down, when this object
        may already be gone."""
        for signal in self._signals:
            signal.disconnect(self._changed)
        self._signals = ()
        self.timer.stop()
        self._pool.shutdown(wait=True)
        self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.unlock()
            self._lock = None

    # ----- after a crash ---------------------------------------------------------------------------------------
    def orphans(self) -> list[Path]:
        """Autosaves no running editor owns (its lock is free or stale), newest first."""
        found = []
        for p in self.folder.glob(f"session-*{project.SUFFIX}") if self.folder.is_dir() else ():
            if p == self.path:
                continue
            lock = QLockFile(str(p.with_suffix(".lock")))
            lock.setStaleLockTime(0)
            if lock.tryLock(0):  # nobody holds it: its editor is gone
                lock.unlock()
                found.append(p)
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    @Slot()
    def offer_restore(self) -> bool:
        """Offer the newest orphaned autosave; True when it was restored. Declined ones are deleted."""
        orphans = self.orphans()
        if not orphans:
            return False
        newest = orphans[0]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(newest.stat().st_mtime))
        answer = QMessageBox.question(
            self.window, "Restore unsaved work?", f"Inpaint Studio did not close normally. Restore the work it "
            f"autosaved at {when} (image, mask, sketch and results)? No deletes that autosave.",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        restored = answer == QMessageBox.Yes and self.files.open_project(newest, restored=True)
        if answer == QMessageBox.Yes and not restored:
            return False  # the file could not be read: leave it for a look, do not delete it
        for p in orphans[:1]:
            p.unlink(missing_ok=True)
            p.with_suffix(".lock").unlink(missing_ok=True)
        if restored:
            self._dirty = True
            self.save_now()  # this session owns the restored work now
        return restored
