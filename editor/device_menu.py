"""Fill > Use the GPU when there is one, and the status bar's "Compute: ..." label.

INPAINT_STUDIO_DEVICE set outside the editor wins until the menu is used; else the saved choice (default on). The
label shows the setting until the first learned model has loaded torch, then the device the worker finds (or the
setting's error)."""
from __future__ import annotations

import os

from PySide6.QtCore import QObject, QSettings, Slot
from PySide6.QtWidgets import QLabel, QWidget

from editor.actions import make_action
from editor.worker import JobController
from engine import device


class DeviceSetting(QObject):
    def __init__(self, window: QWidget, jobs: JobController, settings: QSettings) -> None:
        super().__init__(window)
        self.jobs, self.settings = jobs, settings
        self.action = make_action(window, "Use the &GPU when there is one", self.set_use_gpu, checkable=True,
                                  tip="Learned models compute on a CUDA GPU when there is one; off: on the CPU")
        self.label = QLabel()
        self.label.setToolTip("Where the learned models compute (Fill > Use the GPU when there is one)")
        if device.ENV not in os.environ and not settings.value("use_gpu", True, type=bool):
            device.choose("cpu")
        self.action.setChecked(not device.chosen().startswith("cpu"))
        jobs.device_found.connect(self._on_device_found)
        self._show_setting()

    @Slot(bool)
    def set_use_gpu(self, checked: bool) -> None:
        """What the menu does: the engine reads the choice at the start of every job; it is remembered."""
        device.choose("auto" if checked else "cpu")
        self.action.setChecked(checked)  # when called as a slot by a script rather than the menu
        self.settings.setValue("use_gpu", checked)
        self._show_setting()
        self.jobs.probe_device()

    def show_server(self, url: str | None) -> None:
        """Jobs run on a server (its address) or here again (None): the GPU setting applies only here."""
        self.action.setEnabled(url is None)
        if url is None:
            self._show_setting()
        else:
            self._set_text(f"server {url.split('://', 1)[-1]}")

    def _show_setting(self) -> None:
        self._set_text("GPU when there is one" if self.action.isChecked() else "CPU")

    def _set_text(self, text: str) -> None:
        self.label.setText(f"Compute: {text}")
        # the status bar does not re-lay out its permanent widgets when a label's text grows
        self.label.setMinimumWidth(self.label.sizeHint().width())

    @Slot(str, bool)
    def _on_device_found(self, label: str, has_gpu: bool) -> None:
        self._set_text(label)
        # without a GPU the setting has no effect, unless a device was named outside the editor (it may be the
        # one that fails): then unticking is the way back to the CPU
        self.action.setEnabled(has_gpu or device.chosen() not in ("auto", "cpu"))
        if not has_gpu:
            self.action.setStatusTip("No CUDA GPU found: the learned models run on the CPU")
