"""File > Models folder...: where the user's own models live (Stable Diffusion checkpoints, ONNX inpainting
models, and later segmenters). Remembered in QSettings ``models_dir`` and applied at start; choosing one scans it
(``engine.registry.set_models_dir``), refreshes the picker ("Your models") and lists the files that could not be
used, with the reason."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from engine import registry

KEY = "models_dir"


class ModelsFolder(QObject):
    def __init__(self, window: QMainWindow, settings: QSettings) -> None:
        super().__init__(window)
        self.window, self.settings = window, settings
        self.problems: list[str] = []
        self.found: list[str] = []  # the models the folder added to the picker
        self.action = QAction("&Models folder...", window)
        self.action.setStatusTip("Choose the folder that holds your own models")
        self.action.triggered.connect(self.choose)
        self.clear_action = QAction("Use &no models folder", window)
        self.clear_action.triggered.connect(self.clear)
        self.on_change = []  # callables run after each scan (the picker refreshes, the segmenter is looked for)

    @property
    def folder(self) -> str:
        return str(self.settings.value(KEY, "") or "")

    def apply_saved(self) -> None:
        """At start: scan the remembered folder (quietly; ``report`` says when files could not be used)."""
        if self.folder:
            self._scan(self.folder)

    def report(self) -> None:
        if self.problems:
            self.window.statusBar().showMessage(
                f"Models folder: {len(self.problems)} file(s) could not be used (File > Models folder... lists "
                "them)", 10000)

    def _scan(self, folder: str | None) -> None:
        shipped = {m.name for m in registry.all_models()} - set(self.found)
        self.problems = registry.set_models_dir(folder or None)
        self.found = sorted({m.name for m in registry.all_models()} - shipped)
        for callback in self.on_change:
            callback(folder or None)

    @Slot()
    def choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self.window, "Models folder (your own models)",
                                                self.folder or str(Path.home()))
        if path:
            self.use(path)

    def use(self, folder: str) -> list[str]:
        """Remember ``folder``, scan it, and show what was found and what could not be used."""
        self.settings.setValue(KEY, folder)
        self._scan(folder)
        lines = [f"Models folder: {folder}", f"Models found there: {len(self.found)}"]
        if self.problems:
            lines += ["", "Could not use:"] + [f"\u2022 {p}" for p in self.problems]
        box = QMessageBox.warning if self.problems else QMessageBox.information
        box(self.window, "Models folder", "\n".join(lines))
        return self.problems

    @Slot()
    def clear(self) -> None:
        self.settings.remove(KEY)
        self._scan(None)
        self.window.statusBar().showMessage("No models folder: only the shipped models are listed", 5000)
