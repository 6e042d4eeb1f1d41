"""Fill > Compute on...: this computer, or a server started with ``python main.py serve`` (an address and a token).

On a server, the picker lists the server's models (``engine.registry.use_server``) and every job runs there through
``engine.server.client.Client``: previews, progress, cancel and history work as they do locally. A lost connection
fails the job with one line (the document keeps everything); the choice is remembered in QSettings and tried again
at the next start, falling back to this computer with a message when the server cannot be reached.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QSettings, Qt, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QMainWindow, QMessageBox, QRadioButton, QVBoxLayout)

from engine import registry
from engine.api import InpaintError

MODE, URL, TOKEN = "compute/mode", "compute/server", "compute/token"
CONNECT_TIMEOUT = 5.0  # seconds: listing the models is quick; a wrong address should not freeze the window long


class ComputeSetting(QObject):
    def __init__(self, window: QMainWindow, settings: QSettings) -> None:
        super().__init__(window)
        self.window, self.settings = window, settings
        self.action = QAction("Compute &on...", window)
        self.action.setStatusTip("Run the models on this computer or on a server (python main.py serve)")
        self.action.triggered.connect(self.choose)
        self.on_change = []  # callables run after a switch with the server's address or None (picker, status bar)
        self.problem = ""  # why the remembered server could not be used at start

    @property
    def url(self) -> str:
        return str(self.settings.value(URL, "") or "")

    @property
    def token(self) -> str:
        return str(self.settings.value(TOKEN, "") or "")

    def apply_saved(self) -> None:
        """At start: connect to the remembered server; if it cannot be reached, compute here and say why."""
        if self.settings.value(MODE, "local") == "server" and self.url:
            self.problem = self.connect(self.url, self.token) or ""

    def report(self) -> None:
        if self.problem:
            QMessageBox.warning(self.window, "Compute on a server",
                                f"{self.problem}\n\nThe models run on this computer until the server is back "
                                "(Fill > Compute on...).")

    def connect(self, url: str, token: str) -> str | None:
        """Use the server at ``url``; returns the one-line reason when it cannot be used (nothing changes then)."""
        from engine.server.client import TIMEOUT, Client

        old = registry.server()
        client = Client(url, token, timeout=CONNECT_TIMEOUT)
        try:
            registry.use_server(client)
        except InpaintError as exc:
            client.close()
            return str(exc).splitlines()[0]
        if old is not None:
            old.close()
        client.http.timeout = TIMEOUT  # for the jobs: uploading a big photo may take longer than connecting
        self.settings.setValue(MODE, "server")
        self.settings.setValue(URL, url)
        self.settings.setValue(TOKEN, token)
        self._changed(client.url)
        return None

    def use_local(self) -> None:
        old = registry.server()
        registry.use_server(None)
        if old is not None:
            old.close()
        self.settings.setValue(MODE, "local")
        self._changed(None)

    def _changed(self, url: str | None) -> None:
        for callback in self.on_change:
            callback(url)

    def dialog(self) -> "ComputeDialog":
        return ComputeDialog(self, self.window)

    @Slot()
    def choose(self) -> None:
        self.dialog().exec()


class ComputeDialog(QDialog):
    """This computer / a server (address, token). OK connects first: a server that cannot be used keeps the dialog
    open with the reason, so a typo costs nothing."""

    def __init__(self, setting: ComputeSetting, parent=None) -> None:
        super().__init__(parent)
        self.setting = setting
        self.setWindowTitle("Compute on")
        self.setMinimumWidth(460)  # room for an address and the token's hint
        self.local = QRadioButton("This computer")
        self.remote = QRadioButton("A server (python main.py serve)")
        self.address = QLineEdit(setting.url)
        self.address.setPlaceholderText("http://gpu-box:7860")
        self.token = QLineEdit(setting.token)
        self.token.setEchoMode(QLineEdit.Password)
        self.token.setPlaceholderText("the server's --token (needed off this computer)")
        (self.remote if registry.server() is not None else self.local).setChecked(True)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #c0392b")
        form = QFormLayout()
        form.addRow("Address", self.address)
        form.addRow("Token", self.token)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        for w in (self.local, self.remote):
            lay.addWidget(w)
        lay.addLayout(form)
        lay.addWidget(self.problem)
        lay.addWidget(self.buttons)
        self.remote.toggled.connect(self._enable)
        self._enable(self.remote.isChecked())

    @Slot(bool)
    def _enable(self, on: bool) -> None:
        self.address.setEnabled(on)
        self.token.setEnabled(on)

    def accept(self) -> None:
        if self.local.isChecked():
            self.setting.use_local()
            super().accept()
            return
        if not self.address.text().strip():
            self.problem.setText("Type the server's address, e.g. http://gpu-box:7860")
            return
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            problem = self.setting.connect(self.address.text().strip(), self.token.text().strip())
        finally:
            QApplication.restoreOverrideCursor()
        if problem:
            self.problem.setText(problem)
            return
        super().accept()
