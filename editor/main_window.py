"""The main window: assembly only. Canvas in the centre, tools on the left, the options bar on top, model +
parameters + progress on the right, the history strip at the bottom, a status bar.

Where things live: the edited image, mask, sketch, results and undo in ``document``; what the next job will be and
the fill / learn / variation / refill flows in ``session``; jobs on the worker thread in ``worker``; menus,
shortcuts and tool bars in ``actions`` and ``options_bar``; opening, projects, the clipboard and exporting in
``files`` (what an export writes: ``export``); autosave and restore in ``autosave``; the models folder in
``models_folder``; the GPU setting in ``device_menu``; computing on a server in ``compute``; the side panels
in ``panels/``; questions in ``dialogs``."""
from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QScrollArea, QVBoxLayout, QWidget

from editor import dialogs
from editor.actions import Actions
from editor.autosave import Autosave
from editor.canvas import ORIGINAL_KEYS, Canvas
from editor.compute import ComputeSetting
from editor.device_menu import DeviceSetting
from editor.document import Document
from editor.files import Files
from editor.focus import ReturnFocus
from editor.icons import icon
from editor.models_folder import ModelsFolder
from editor.panels.history_panel import HistoryPanel
from editor.panels.model_panel import ModelPanel
from editor.panels.progress_panel import ProgressPanel
from editor.session import Session
from engine import registry

# The dock layout's version in the saved window state: a state saved by an older layout is not restored (1: the
# model dock takes the bottom-right corner).
DOCK_LAYOUT = 1


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Inpaint Studio")
        self.setWindowIcon(icon("brush"))
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.settings = QSettings()
        self.doc = Document(self)
        self.session = Session(self.doc, self)
        self.jobs = self.session.jobs
        # the session's flows under their old names, for scripts (self-test, benchmarks) and tests
        self.fill, self.learn, self.fill_variation = self.session.fill, self.session.learn, self.session.variation
        self.canvas = Canvas(self.doc)
        self.setCentralWidget(self.canvas)
        self.models_folder = ModelsFolder(self, self.settings)
        self.models_folder.apply_saved()  # before the picker lists the models
        self.compute = ComputeSetting(self, self.settings)
        self.compute.apply_saved()  # a remembered server's models replace this computer's in the picker
        self.model_panel = ModelPanel(self.session)
        self.progress = ProgressPanel(self.session)
        self.history = HistoryPanel(self.doc)
        self.files = Files(self, self.doc, self.settings)
        self.open_path, self.run_export = self.files.open_path, self.files.run_export
        self.device = DeviceSetting(self, self.jobs, self.settings)
        self.act = Actions(self, self.session, self.canvas, self.history, self.files, self.device.action,
                           self.models_folder.action, self.models_folder.clear_action, self.compute.action)
        self.autosave = Autosave(self, self.doc, self.files)
        self.focus = ReturnFocus(self.canvas, self)
        self.session.ask = self.ask
        self._build_docks()
        self._build_status_bar()
        self._connect()
        self._update_title()
        self.models_folder.report()
        if registry.server() is not None:
            self.device.show_server(registry.server().url)
        if self.compute.problem:
            QTimer.singleShot(0, self.compute.report)  # once the window is up
        self.restoreGeometry(self.settings.value("geometry", b""))
        self.restoreState(self.settings.value("windowState", b""), DOCK_LAYOUT)
        if self.model_panel.load_error:
            QTimer.singleShot(0, self._report_model_error)  # once the window is up

    def _build_docks(self) -> None:
        # Model and parameters scroll; Fill/Cancel, progress and the loss curve stay in sight below them.
        scroll = QScrollArea()
        scroll.setWidget(self.model_panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.NoFrame)
        right = QWidget()
        lay = QVBoxLayout(right)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.progress)
        right.setMinimumWidth(380)
        dock = QDockWidget("Model", self)
        dock.setObjectName("modelDock")
        dock.setFeatures(QDockWidget.DockWidgetMovable)
        dock.setWidget(right)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        # The model dock runs the window's full height, as an editor's tool docks do (History sits under the canvas
        # only): at 1280x820 a MaskGIT model's Seed row needed scrolling when History took the bottom right corner.
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        hist = QDockWidget("History", self)
        hist.setObjectName("historyDock")
        hist.setFeatures(QDockWidget.DockWidgetMovable)
        hist.setWidget(self.history)
        self.addDockWidget(Qt.BottomDockWidgetArea, hist)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.pos_label = QLabel()
        self.size_label = QLabel()
        self.zoom_label = QLabel()
        sb.addPermanentWidget(self.device.label)
        for w in (self.pos_label, self.size_label, self.zoom_label):
            w.setMinimumWidth(90)
            sb.addPermanentWidget(w)
        sb.showMessage("Paint the area to fill, then press Ctrl+Enter")

    def _connect(self) -> None:
        c, s = self.canvas, self.session
        c.zoom_changed.connect(self._on_zoom)
        c.cursor_moved.connect(self._on_cursor)
        c.painted.connect(s.note_painted)
        c.region_dragged.connect(self._on_region_dragged)
        self.history.compare_toggled.connect(self._on_compare)
        s.status.connect(self.statusBar().showMessage)
        s.error.connect(self._on_error)
        self.doc.image_replaced.connect(self._on_image_replaced)
        self.files.saved_changed.connect(self._update_title)
        for root in (self.act.options, self.model_panel):
            self.focus.watch(root)
        s.model_changed.connect(self._on_model_changed)  # after the panel rebuilt its fields
        c.objects.status.connect(self.statusBar().showMessage)
        self.models_folder.on_change += [self._on_models_folder, c.objects.use_models_dir]
        self.compute.on_change += [self._on_compute]
        if self.models_folder.folder:
            c.objects.use_models_dir(self.models_folder.folder)

    # ----- small view updates --------------------------------------------------------------------------------
    @Slot()
    def _on_region_dragged(self) -> None:
        self.session.set_region(self.doc.region, "user")

    @Slot(bool)
    def _on_compare(self, on: bool) -> None:
        self.canvas.compare = on
        self.canvas.update()

    @Slot(float)
    def _on_zoom(self, z: float) -> None:
        self.zoom_label.setText(f"{z * 100:.0f}%")

    @Slot(int, int)
    def _on_cursor(self, x: int, y: int) -> None:
        self.pos_label.setText(f"{x}, {y}" if x >= 0 else "")

    @Slot()
    def _on_image_replaced(self) -> None:
        w, h = self.doc.size
        self.size_label.setText(f"{w} x {h}")
        self._update_title()

    @Slot()
    def _update_title(self) -> None:
        unsaved = self.files.unsaved() is not None
        self.setWindowTitle(f"{self.files.display_name()}{' *' if unsaved else ''} - Inpaint Studio")

    @Slot(str)
    def _on_model_changed(self, name: str) -> None:
        self.focus.watch(self.model_panel)

    def _on_models_folder(self, folder) -> None:
        self.model_panel.refresh_models()

    def _on_compute(self, url: str | None) -> None:
        """Switched between this computer and a server: the running job stops, the picker lists the new models."""
        self.session.models_changed()
        self.model_panel.refresh_models()
        self.device.show_server(url)
        self.statusBar().showMessage(f"Computing on the server {url}" if url else "Computing on this computer", 5000)

    # ----- input the window routes, dialogs, shutdown --------------------------------------------------------
    def keyPressEvent(self, e) -> None:  # hold-to-see-original works wherever the focus is
        if e.key() in ORIGINAL_KEYS or e.key() == Qt.Key_Space:
            self.canvas.keyPressEvent(e)
        else:
            super().keyPressEvent(e)

    def keyReleaseEvent(self, e) -> None:
        if e.key() in ORIGINAL_KEYS or e.key() == Qt.Key_Space:
            self.canvas.keyReleaseEvent(e)
        else:
            super().keyReleaseEvent(e)

    def dragEnterEvent(self, e) -> None:
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:
        files = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if files:
            e.acceptProposedAction()
            self.files.open_path(files[0])

    @Slot()
    def _report_model_error(self) -> None:
        self.error("Models unavailable", self.model_panel.load_error)

    @Slot(str, str)
    def _on_error(self, title: str, message: str) -> None:
        self.error(title, message)  # looked up at each call: the self-test replaces it

    def error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(message, 8000)
        QMessageBox.critical(self, title, message)

    def ask(self, title: str, text: str, choices: list[str], default: str) -> str | None:
        return dialogs.ask(self, title, text, choices, default)  # looked up at each call: tests answer it

    def closeEvent(self, e: QCloseEvent) -> None:
        if not self.files.confirm_discard("quit"):
            e.ignore()
            return
        self.session.shutdown()  # cancel -> quit() -> wait(): the worker thread ends before the window goes
        self.canvas.objects.shutdown()
        self.autosave.discard()  # a clean close: nothing to restore
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState(DOCK_LAYOUT))
        e.accept()
