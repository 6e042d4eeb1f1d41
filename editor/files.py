"""Opening images (dialog, recent files, drag and drop, the command line) and the export dialogs, with the guards
around them: accepted fills not exported yet are not dropped without asking, and the opened original is not
overwritten without asking. What an export writes is built in ``editor.export``; errors become dialogs."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Slot
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QMessageBox

from editor import export
from editor.document import Document
from engine import imageio
from engine.api import InpaintError

MAX_RECENT = 10


class Files(QObject):
    def __init__(self, window: QMainWindow, doc: Document, settings: QSettings) -> None:
        super().__init__(window)
        self.window, self.doc, self.settings = window, doc, settings
        self.exported_clean = True  # no accepted fill since the last export (or the opening)
        self.recent_menu = QMenu("Open &recent", window)
        self.refresh_recent_menu()

    def _error(self, title: str, message: str) -> None:
        self.window.error(title, message)  # looked up at each call: the self-test replaces it

    def _say(self, text: str, ms: int = 5000) -> None:
        self.window.statusBar().showMessage(text, ms)

    def note_accepted(self) -> None:
        """An accepted fill changed the image: closing or opening another asks first until it is exported."""
        self.exported_clean = False

    def confirm_discard(self, doing: str) -> bool:
        if self.exported_clean:
            return True
        answer = QMessageBox.question(self.window, "Discard changes?", f"Accepted fills have not been exported. "
                                      f"Discard them and {doing}?", QMessageBox.Discard | QMessageBox.Cancel,
                                      QMessageBox.Cancel)
        return answer == QMessageBox.Discard

    # ----- opening -------------------------------------------------------------------------------------------
    def open_path(self, path: str | Path) -> bool:
        """Load an image; any problem becomes a dialog. True when the image is now open."""
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
        self.exported_clean = True
        self._add_recent(str(Path(loaded.path).resolve()))
        self._say(f"Opened {Path(loaded.path).name}")
        return True

    @Slot()
    def open_dialog(self) -> None:
        start = str(self.doc.path.parent) if self.doc.path else ""
        pats = " ".join(f"*{s}" for s in imageio.OPEN_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self.window, "Open image", start, f"Images ({pats});;All files (*)")
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
            self.exported_clean = True
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
