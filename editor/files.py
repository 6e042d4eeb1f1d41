"""Opening (images and projects: dialog, recent files, drag and drop, the command line, the clipboard), saving
projects, the export dialogs, and the guards around them: nothing unsaved is dropped without asking (unaccepted
results, edits neither saved in a project nor exported), and the opened original is not overwritten without
asking. What an export writes is built in ``editor.export``; a project's format is ``engine.project``; errors
become dialogs."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QMessageBox

from editor import export
from editor.document import Document
from editor.qimages import qimage_rgb, rgb_qimage
from engine import imageio, project
from engine.api import InpaintError

MAX_RECENT = 10
PROJECT_FILTER = f"Inpaint Studio project (*{project.SUFFIX})"


class Files(QObject):
    saved_changed = Signal()  # the project was saved or opened, or its file changed: the title follows

    def __init__(self, window: QMainWindow, doc: Document, settings: QSettings) -> None:
        super().__init__(window)
        self.window, self.doc, self.settings = window, doc, settings
        self.project_path: Path | None = None  # the project file this work was opened from or saved to
        self._saved_results: set[int] = set()  # id() of the results held by the last save (or opening)
        self._exported_at: tuple[int, int] | None = None  # (undo index, count) at the last image export
        self.recent_menu = QMenu("Open &recent", window)
        self.refresh_recent_menu()
        doc.undo_stack.cleanChanged.connect(self.saved_changed)
        doc.results_changed.connect(self.saved_changed)

    def _error(self, title: str, message: str) -> None:
        self.window.error(title, message)  # looked up at each call: the self-test replaces it

    def _say(self, text: str, ms: int = 5000) -> None:
        self.window.statusBar().showMessage(text, ms)

    # ----- what would be lost ---------------------------------------------------------------------------------
    def unsaved(self) -> str | None:
        """What closing the work now would lose, in words, or None when it is all kept (in the project file, or
        the image exported with no result pending)."""
        doc = self.doc
        pending = [r for r in doc.results if not r.accepted and id(r) not in self._saved_results]
        stack = doc.undo_stack
        edited = not stack.isClean() and self._exported_at != (stack.index(), stack.count())
        parts = []
        if pending:
            parts.append(f"{len(pending)} result{'s' if len(pending) > 1 else ''} not accepted")
        if edited:
            parts.append("edits not saved or exported")
        return " and ".join(parts) if parts else None

    def note_accepted(self) -> None:
        """Kept for callers of the old guard: an accept is an undo step, which ``unsaved`` sees."""

    def confirm_discard(self, doing: str) -> bool:
        """Ask before ``doing`` drops unsaved work: Save (the project), Discard or Cancel. True: go on."""
        what = self.unsaved()
        if what is None:
            return True
        answer = QMessageBox.question(
            self.window, "Keep your work?", f"This image has {what}. Save a project (everything: image, mask, "
            f"sketch and every result) before you {doing}?", QMessageBox.Save | QMessageBox.Discard |
            QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save_project()
        return answer == QMessageBox.Discard

    def _mark_saved(self, path: Path | None) -> None:
        self.project_path = path
        self._saved_results = {id(r) for r in self.doc.results}
        self._exported_at = None
        self.doc.undo_stack.setClean()
        self.saved_changed.emit()

    # ----- opening -------------------------------------------------------------------------------------------
    def open_path(self, path: str | Path) -> bool:
        """Open an image or a project; any problem becomes a dialog. True when it is now open."""
        if Path(path).suffix.lower() == project.SUFFIX:
            return self.open_project(path)
        if not self.confirm_discard("open another image"):
            return False
        try:
            loaded = imageio.load_image(path)
        except InpaintError as exc:
            self._error("Cannot open image", str(exc))
            return False
        except OSError as exc:
            self._error("Cannot open image", f"{path}: {exc.strerror or exc}")
            return False
        self.doc.set_image(loaded.rgb, Path(loaded.path), loaded.alpha)  # the session drops the old image's job
        self._mark_saved(None)
        self._add_recent(str(Path(loaded.path).resolve()))
        said = "; ".join(loaded.warnings)  # e.g. only the first frame of an animated GIF
        self._say(f"Opened {Path(loaded.path).name}" + (f": {said}" if said else ""), 10000 if said else 5000)
        return True

    def open_project(self, path: str | Path, restored: bool = False) -> bool:
        """Open a project file: image, mask, sketch and every result as they were saved. ``restored``: an
        autosave brought back after a crash, not a file of the user's (it stays unsaved)."""
        if not self.confirm_discard("open another project"):
            return False
        try:
            loaded = project.load(path)
        except InpaintError as exc:
            self._error("Cannot open project", str(exc))
            return False
        self.doc.load_project(loaded)
        if restored:
            self.project_path = None
            self._saved_results = set()
            self.doc.undo_stack.resetClean()  # nothing of it is saved anywhere yet
            self.saved_changed.emit()
            self._say(f"Restored the autosaved work ({len(loaded.results)} results)", 8000)
        else:
            self._mark_saved(Path(path))
            self._add_recent(str(Path(path).resolve()))
            self._say(f"Opened project {Path(path).name} ({len(loaded.results)} results)")
        return True

    @Slot()
    def open_dialog(self) -> None:
        start = str(self.doc.path.parent) if self.doc.path else ""
        pats = " ".join(f"*{s}" for s in imageio.OPEN_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self.window, "Open image or project", start,
                                              f"Images and projects ({pats} *{project.SUFFIX});;Images ({pats});;"
                                              f"{PROJECT_FILTER};;All files (*)")
        if path:
            self.open_path(path)

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _add_recent(self, path: str) -> None:
        recent = [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", [path] + recent[:MAX_RECENT - 1])
        self.refresh_recent_menu()

    def refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        for p in self.recent_files():
            a = self.recent_menu.addAction(Path(p).name)
            a.setData(p)
            a.setToolTip(p)
            a.triggered.connect(self._open_recent)
        self.recent_menu.setEnabled(bool(self.recent_files()))

    @Slot()
    def _open_recent(self) -> None:
        self.open_path(self.sender().data())

    # ----- projects ------------------------------------------------------------------------------------------
    @Slot()
    def save_project(self) -> bool:
        """Save to the project's file (asking where the first time); True when saved."""
        if self.project_path is None:
            return self.save_project_as()
        return self.write_project(self.project_path)

    @Slot()
    def save_project_as(self) -> bool:
        stem = (self.project_path or self.doc.path or Path("untitled")).stem
        folder = (self.project_path or self.doc.path or Path.home() / "x").parent
        path, _ = QFileDialog.getSaveFileName(self.window, "Save project", str(folder / f"{stem}{project.SUFFIX}"),
                                              PROJECT_FILTER)
        if not path:
            return False
        p = Path(path)
        return self.write_project(p if p.suffix.lower() == project.SUFFIX else p.with_name(p.name + project.SUFFIX))

    def write_project(self, path: Path) -> bool:
        if self.doc.empty:
            self._error("Nothing to save", "Open or paste an image first.")
            return False
        try:
            project.save(path, self.doc.to_project())
        except InpaintError as exc:
            self._error("Save failed", str(exc))
            return False
        self._mark_saved(Path(path))
        self._add_recent(str(Path(path).resolve()))
        self._say(f"Saved project {Path(path).name} ({len(self.doc.results)} results)")
        return True

    def display_name(self) -> str:
        if self.project_path is not None:
            return self.project_path.name
        return self.doc.path.name if self.doc.path else ("pasted image" if not self.doc.empty else "untitled")

    # ----- clipboard -----------------------------------------------------------------------------------------
    @Slot()
    def paste(self) -> bool:
        """Ctrl+V: the clipboard's image becomes a new document (an image file copied in a file manager opens)."""
        data = QGuiApplication.clipboard().mimeData()
        if data is not None and data.hasImage():
            image = QGuiApplication.clipboard().image()
            if not image.isNull():
                if not self.confirm_discard("paste a new image"):
                    return False
                rgb, alpha = qimage_rgb(image)
                self.doc.set_image(rgb, None, alpha)
                self._mark_saved(None)
                self._say(f"Pasted a {rgb.shape[1]} x {rgb.shape[0]} image")
                return True
        if data is not None and data.hasUrls():
            files = [u.toLocalFile() for u in data.urls() if u.isLocalFile()]
            if files:
                return self.open_path(files[0])
        self._say("The clipboard holds no image", 4000)
        return False

    @Slot()
    def copy_result(self) -> bool:
        """Ctrl+C: the shown result (applied to the image), or the image as it is, to the clipboard."""
        if self.doc.empty:
            return False
        QGuiApplication.clipboard().setImage(rgb_qimage(self.doc.composed()))
        self._say("Copied the shown result" if self.doc.shown is not None else "Copied the image", 4000)
        return True

    # ----- exporting -----------------------------------------------------------------------------------------
    def _save_dialog(self, title: str, suffix: str) -> Path | None:
        stem = self.doc.path.stem if self.doc.path else "image"
        folder = self.doc.path.parent if self.doc.path else Path.home()
        path, chosen = QFileDialog.getSaveFileName(self.window, title, str(folder / f"{stem}{suffix}.png"),
                                                   export.IMAGE_FILTER)
        if not path:
            return None
        p = Path(path)
        if not p.suffix:  # a bare name takes the suffix of the chosen filter
            p = p.with_suffix(".jpg" if "JPEG" in chosen else ".webp" if "WebP" in chosen else ".png")
        return p

    def run_export(self, kind: str, path: Path) -> Path | None:
        """Export ``kind`` ("image" | "mask" | "strip") to ``path``; refuses to overwrite the opened original
        unless the user confirms. Errors become dialogs."""
        if export.is_original(self.doc, path):
            answer = QMessageBox.question(self.window, "Overwrite the original?",
                                          f"{path.name} is the image you opened. Replace it with the edited "
                                          "image? This cannot be undone.", QMessageBox.Yes | QMessageBox.No,
                                          QMessageBox.No)
            if answer != QMessageBox.Yes:
                return None
        try:
            out = {"image": export.export_image, "mask": export.export_mask, "strip": export.export_strip}[kind](
                self.doc, path)
        except InpaintError as exc:
            self._error("Export failed", str(exc))
            return None
        if kind == "image":
            self._exported_at = (self.doc.undo_stack.index(), self.doc.undo_stack.count())
            self.saved_changed.emit()
        self._say(f"Exported {out}")
        return out

    @Slot()
    def export_image_dialog(self) -> None:
        if (p := self._save_dialog("Export image", "-inpainted")) is not None:
            self.run_export("image", p)

    @Slot()
    def export_mask_dialog(self) -> None:
        if (p := self._save_dialog("Export mask", "-mask")) is not None:
            self.run_export("mask", p)

    @Slot()
    def export_strip_dialog(self) -> None:
        if (p := self._save_dialog("Export strip", "-strip")) is not None:
            self.run_export("strip", p)
