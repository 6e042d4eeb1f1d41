"""The main window: canvas in the centre, tools on the left, brush/mask options on top, model + parameters +
progress on the right, the history strip at the bottom, a status bar. It wires widgets to the document and
to the job controller; the logic of edits lives in ``Document``, that of jobs in ``worker``."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QColor, QKeySequence
from PySide6.QtWidgets import (QColorDialog, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QScrollArea, QSlider, QSpinBox, QStyle, QToolBar, QToolButton, QVBoxLayout, QWidget)

from editor import export
from editor.canvas import ORIGINAL_KEYS, Canvas
from editor.document import Document, HistoryItem
from editor.icons import icon
from editor.panels.history_panel import HistoryPanel
from editor.panels.model_panel import ModelPanel
from editor.panels.progress_panel import ProgressPanel
from editor.worker import Job, JobController
from engine import device, imageio, registry
from engine.api import InpaintError, Preview, Result

MAX_RECENT = 10
TOOL_KEYS = {"brush": ("Mask brush", "B"), "eraser": ("Mask eraser", "E"), "rect": ("Rectangle mask", "R"),
             "sketch": ("Sketch pen", "P"), "region": ("Move region box", "G")}
TOOL_HINTS = {"brush": "left button paints the mask, right button erases; [ and ] change the size",
              "eraser": "erases the mask; [ and ] change the size",
              "rect": "drag a rectangle to mask it; right button drag removes it",
              "sketch": "draw the strokes the fill should follow (own layer); right button erases them",
              "region": "drag the box the model works on; the square handle resizes it"}


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Inpaint Studio")
        self.setWindowIcon(icon("brush"))
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.doc = Document(self)
        self.jobs = JobController(self)
        self.canvas = Canvas(self.doc)
        self.setCentralWidget(self.canvas)
        self.model_panel = ModelPanel()
        self.progress = ProgressPanel()
        self.history = HistoryPanel(self.doc)
        self.settings = QSettings()
        self._toggle_t0: float | None = None
        self.last_toggle_latency: float | None = None  # attribute flip -> refilled canvas painted, seconds
        self._exported_clean = True  # no accepted fill since the last export
        self._region_source = "default"  # where the region box came from: "default" | "detected" | "user"
        self._replace: tuple[int, int] | None = None  # (job id, history index) an attribute refill replaces
        self._fill_after: int | None = None  # id of the learn job that Fill waits for
        self._doing = "Fill"  # what the latest job does, for its failure dialog and cancel message
        self._build_docks()
        self._build_actions()
        self._build_status_bar()
        self._connect()
        self._on_model_changed(self.model_panel.current_model())
        self._init_device()
        self._update_title()
        self.restoreGeometry(self.settings.value("geometry", b""))
        self.restoreState(self.settings.value("windowState", b""))
        if self.model_panel.load_error:
            QTimer.singleShot(0, self._report_model_error)  # once the window is up

    # ----- construction --------------------------------------------------------------------------------------
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
        hist = QDockWidget("History", self)
        hist.setObjectName("historyDock")
        hist.setFeatures(QDockWidget.DockWidgetMovable)
        hist.setWidget(self.history)
        self.addDockWidget(Qt.BottomDockWidgetArea, hist)

    def _action(self, text: str, slot, shortcut=None, tip: str = "", icon_=None, checkable=False) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            seqs = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(s) for s in seqs])
        keys = a.shortcut().toString(QKeySequence.NativeText)
        a.setToolTip(f"{tip or text}" + (f"  ({keys})" if keys else ""))
        a.setStatusTip(tip or text)
        if icon_ is not None:
            a.setIcon(icon_)
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)  # shortcuts work whatever widget has focus
        return a

    def _build_actions(self) -> None:
        st = self.style()
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_open = self._action("&Open...", self.open_dialog, QKeySequence.Open, "Open an image",
                                     st.standardIcon(QStyle.SP_DialogOpenButton))
        f.addAction(self.act_open)
        self.recent_menu = f.addMenu("Open &recent")
        f.addSeparator()
        self.act_export = self._action("&Export image...", self.export_image_dialog, "Ctrl+Shift+E",
                                       "Export the image with the shown result (PNG/JPEG/WebP)",
                                       st.standardIcon(QStyle.SP_DialogSaveButton))
        f.addAction(self.act_export)
        f.addAction(self._action("Export &mask...", self.export_mask_dialog, "Ctrl+Shift+M", "Export the mask"))
        f.addAction(self._action("Export &strip...", self.export_strip_dialog, "Ctrl+Shift+T",
                                 "Export original | masked | result side by side"))
        f.addSeparator()
        f.addAction(self._action("&Quit", self.close, QKeySequence.Quit))

        e = mb.addMenu("&Edit")
        # Own actions rather than QUndoStack.createUndoAction: a fixed label keeps the toolbar from jumping;
        # the tooltip names the step.
        stack = self.doc.undo_stack
        self.act_undo = self._action("&Undo", stack.undo, "Ctrl+Z", "Undo", icon("undo"))
        self.act_redo = self._action("&Redo", stack.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo",
                                     icon("redo"))
        stack.canUndoChanged.connect(self.act_undo.setEnabled)
        stack.canRedoChanged.connect(self.act_redo.setEnabled)
        stack.undoTextChanged.connect(self._on_undo_text)
        stack.redoTextChanged.connect(self._on_redo_text)
        self.act_undo.setEnabled(False)
        self.act_redo.setEnabled(False)
        e.addAction(self.act_undo)
        e.addAction(self.act_redo)

        m = mb.addMenu("&Mask")
        m.addAction(self._action("&Invert", self.doc.invert_mask, "Ctrl+I", "Invert the mask"))
        m.addAction(self._action("&Clear", self.doc.clear_mask, "Ctrl+D", "Clear the mask"))
        m.addAction(self._action("&Grow 8 px", self._grow, "Ctrl+Alt+=", "Grow the mask by 8 pixels"))
        m.addAction(self._action("&Shrink 8 px", self._shrink, "Ctrl+Alt+-", "Shrink the mask by 8 pixels"))
        m.addAction(self._action("&Feather 6 px", self._feather, "Ctrl+Alt+F", "Smooth the mask outline"))
        m.addSeparator()
        m.addAction(self._action("Sketch from image &edges", self.sketch_from_edges, "Ctrl+Alt+E",
                                 "Trace the image's edges onto the sketch layer (inside the mask if there is one)"))
        m.addAction(self._action("Clear s&ketch", self.doc.clear_sketch, "Ctrl+Shift+D", "Clear the sketch layer"))

        v = mb.addMenu("&View")
        v.addAction(self._action("Zoom to &fit", self.canvas.fit, "Ctrl+0", "Fit the image in the window"))
        v.addAction(self._action("&Actual size (100%)", self.canvas.actual_size, "Ctrl+1", "One image pixel per "
                                 "screen pixel"))
        v.addAction(self._action("Zoom &in", self._zoom_in, ["Ctrl++", "Ctrl+="], "Zoom in"))
        v.addAction(self._action("Zoom &out", self._zoom_out, "Ctrl+-", "Zoom out"))
        v.addSeparator()
        self.act_compare = self._action("&Compare with before", self.history.compare_button.toggle, "C",
                                        "Split view between the image before and the shown result")
        v.addAction(self.act_compare)
        hold = QAction("Hold \\ or O: show the original", self)
        hold.setEnabled(False)
        v.addAction(hold)

        fm = mb.addMenu("F&ill")
        self.act_fill = self._action("&Fill", self.fill, ["Ctrl+Return", "Ctrl+Enter"],
                                     "Fill the masked area with the selected model", icon("fill"))
        self.act_variation = self._action("New &variation", self.fill_variation, "Ctrl+Shift+Return",
                                          "Random seed, fill again", icon("variation"))
        self.act_learn = self._action("&Learn this image", self.learn, "Ctrl+L",
                                      "Learn the image now, in the background, while you paint the mask; Fill then "
                                      "starts from what was learned (models that learn the image)", icon("learn"))
        self.act_learn.setIconText("Learn")  # the toolbar's label; menus keep the full text
        self.act_cancel = self._action("&Cancel", self.jobs.cancel, "Esc", "Stop the running fill or learning",
                                       icon("cancel"))
        self.act_cancel.setEnabled(False)
        self.act_accept = self._action("&Accept result", self._accept_shown, "Ctrl+Shift+A",
                                       "Apply the shown result to the image (one undo step)")
        self.act_discard = self._action("&Discard result", self._discard_shown, "Delete", "Remove the shown result")
        for a in (self.act_fill, self.act_variation, self.act_learn, self.act_cancel, self.act_accept,
                  self.act_discard):
            fm.addAction(a)
        fm.addSeparator()
        self.act_gpu = self._action("Use the &GPU when there is one", self._on_use_gpu,
                                    tip="Learned models compute on a CUDA GPU when there is one; off: on the CPU",
                                    checkable=True)
        fm.addAction(self.act_gpu)

        # Tools: a vertical bar on the left, one exclusive group.
        tools = QToolBar("Tools", self)
        tools.setObjectName("toolsBar")
        tools.setMovable(False)
        tools.setIconSize(tools.iconSize() * 1.25)
        self.addToolBar(Qt.LeftToolBarArea, tools)
        group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        tm = mb.addMenu("&Tools")
        for name, (label, key) in TOOL_KEYS.items():
            a = self._action(label, self._on_tool, key, label + (" (right button erases)" if name in ("brush", "sketch")
                                                                 else ""), icon(name), checkable=True)
            a.setData(name)
            group.addAction(a)
            tools.addAction(a)
            tm.addAction(a)
            self.tool_actions[name] = a
        self.tool_actions["brush"].setChecked(True)
        tm.addSeparator()
        tm.addAction(self._action("Smaller brush", self._smaller, "[", "Brush size down"))
        tm.addAction(self._action("Larger brush", self._larger, "]", "Brush size up"))

        # Options bar on top: file + undo + brush size + mask opacity + colours + fill.
        top = QToolBar("Options", self)
        top.setObjectName("optionsBar")
        top.setMovable(False)
        self.addToolBar(Qt.TopToolBarArea, top)
        for a in (self.act_open, self.act_export, self.act_undo, self.act_redo):
            a.setPriority(QAction.LowPriority)  # icon only beside text: the Fill actions must fit at 1024 px
            top.addAction(a)
        top.addSeparator()
        top.addWidget(QLabel(" Size "))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 500)
        self.size_spin.setSuffix(" px")
        self.size_spin.setValue(int(self.canvas.brush_size))
        self.size_spin.setToolTip("Brush size in image pixels ([ and ])")
        top.addWidget(self.size_spin)
        top.addWidget(QLabel("  Mask opacity "))
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(5, 100)
        self.opacity.setValue(int(self.canvas.mask_opacity * 100))
        self.opacity.setFixedWidth(110)
        self.opacity.setToolTip("How opaque the mask overlay is drawn")
        top.addWidget(self.opacity)
        self.mask_color_btn = self._color_button("Mask colour", self.canvas.mask_color, self._pick_mask_color)
        self.sketch_color_btn = self._color_button("Sketch colour", self.canvas.sketch_color, self._pick_sketch_color)
        top.addWidget(self.mask_color_btn)
        top.addWidget(self.sketch_color_btn)
        top.addSeparator()
        for a in (self.act_learn, self.act_fill, self.act_variation, self.act_cancel):
            top.addAction(a)
        top.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        hm = mb.addMenu("&Help")
        hm.addAction(self._action("&Keyboard and mouse", self.show_shortcuts, QKeySequence.HelpContents,
                                  "All shortcuts and mouse gestures"))
        self._refresh_recent_menu()

    @Slot()
    def show_shortcuts(self) -> None:
        """A table built from the actions themselves, so it cannot drift from the real key bindings."""
        rows = []
        for menu in self.menuBar().findChildren(type(self.recent_menu)):
            for a in menu.actions():
                keys = a.shortcut().toString(QKeySequence.NativeText)
                if keys and not a.isSeparator():
                    rows.append(f"<tr><td>{a.text().replace('&', '')}</td><td><b>{keys}</b></td></tr>")
        rows += [f"<tr><td>{what}</td><td><b>{how}</b></td></tr>" for what, how in (
            ("Erase with the current tool", "right button"), ("Pan", "middle button or space + drag"),
            ("Zoom around the cursor", "wheel"), ("Show the original", "hold \\ or O"))]
        QMessageBox.information(self, "Keyboard and mouse", "<table cellspacing=4>" + "".join(rows) + "</table>")

    def _color_button(self, tip: str, color: QColor, slot) -> QToolButton:
        b = QToolButton()
        b.setToolTip(tip)
        b.setText(tip.split()[0])
        b.setToolButtonStyle(Qt.ToolButtonTextOnly)
        b.clicked.connect(slot)
        self._paint_color_button(b, color)
        return b

    @staticmethod
    def _paint_color_button(b: QToolButton, color: QColor) -> None:
        fg = "black" if color.lightness() > 140 else "white"
        b.setStyleSheet(f"QToolButton {{ background: {color.name()}; color: {fg}; border-radius: 3px; "
                        f"padding: 2px 8px; margin: 0 3px; }}")

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.pos_label = QLabel()
        self.size_label = QLabel()
        self.zoom_label = QLabel()
        self.device_label = QLabel()
        self.device_label.setToolTip("Where the learned models compute (Fill > Use the GPU when there is one)")
        sb.addPermanentWidget(self.device_label)
        for w in (self.pos_label, self.size_label, self.zoom_label):
            w.setMinimumWidth(90)
            sb.addPermanentWidget(w)
        sb.showMessage("Paint the area to fill, then press Ctrl+Enter")

    def _init_device(self) -> None:
        """The GPU setting: INPAINT_STUDIO_DEVICE set outside the editor wins until the menu is used; else the saved
        choice (default on). The status bar shows the setting until the first learned model runs, then the device."""
        if device.ENV not in os.environ and not self.settings.value("use_gpu", True, type=bool):
            device.choose("cpu")
        self.act_gpu.setChecked(not device.chosen().startswith("cpu"))
        self.jobs.device_found.connect(self._on_device_found)
        self._show_device_setting()

    def _show_device_setting(self) -> None:
        self._set_device_text("GPU when there is one" if self.act_gpu.isChecked() else "CPU")

    def _set_device_text(self, text: str) -> None:
        self.device_label.setText(f"Compute: {text}")
        # the status bar does not re-lay out its permanent widgets when a label's text grows
        self.device_label.setMinimumWidth(self.device_label.sizeHint().width())

    @Slot(bool)
    def _on_use_gpu(self, checked: bool) -> None:
        device.choose("auto" if checked else "cpu")  # read by the engine at the start of every job
        self.settings.setValue("use_gpu", checked)
        self._show_device_setting()
        self.jobs.probe_device()

    @Slot(str, bool)
    def _on_device_found(self, label: str, has_gpu: bool) -> None:
        self._set_device_text(label)
        # without a GPU the setting has no effect, unless a device was named outside the editor (it may be the
        # one that fails): then unticking is the way back to the CPU
        self.act_gpu.setEnabled(has_gpu or device.chosen() not in ("auto", "cpu"))
        if not has_gpu:
            self.act_gpu.setStatusTip("No CUDA GPU found: the learned models run on the CPU")

    def _connect(self) -> None:
        c = self.canvas
        c.zoom_changed.connect(self._on_zoom)
        c.cursor_moved.connect(self._on_cursor)
        c.painted.connect(self._on_canvas_painted)
        self.size_spin.valueChanged.connect(self._on_size)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.model_panel.model_changed.connect(self._on_model_changed)
        self.model_panel.attribute_toggled.connect(self._on_attribute_toggled)
        self.model_panel.variation.clicked.connect(self.fill_variation)
        self.progress.fill_button.clicked.connect(self.fill)
        self.progress.cancel_button.clicked.connect(self.jobs.cancel)
        self.history.accept_requested.connect(self.accept_result)
        self.history.discard_requested.connect(self.doc.discard_result)
        self.history.compare_toggled.connect(self._on_compare)
        self.jobs.preview_tick.connect(self._on_preview)
        self.jobs.progress.connect(self.progress.set_progress)
        self.jobs.loss_point.connect(self.progress.loss.add)
        self.jobs.message.connect(self.progress.status.setText)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.failed.connect(self._on_job_failed)
        self.jobs.cancelled.connect(self._on_job_cancelled)
        self.jobs.busy_changed.connect(self._on_busy)
        self.jobs.region_ready.connect(self._on_region_suggested)
        self.canvas.region_dragged.connect(self._on_region_dragged)
        self.doc.image_replaced.connect(self._on_image_replaced)
        self.doc.undo_stack.cleanChanged.connect(self._update_title)

    # ----- files ---------------------------------------------------------------------------------------------
    def open_path(self, path: str | Path) -> bool:
        """Load an image; any problem becomes a dialog. True when the image is now open."""
        if not self._confirm_discard("open another image"):
            return False
        try:
            loaded = imageio.load_image(path)
        except InpaintError as exc:
            self.error("Cannot open image", str(exc))
            return False
        except OSError as exc:
            self.error("Cannot open image", f"{path}: {exc.strerror or exc}")
            return False
        self.jobs.abandon()  # its result would belong to the previous image
        self.progress.finish("idle")
        self.doc.set_image(loaded.rgb, Path(loaded.path), loaded.alpha)
        self._exported_clean = True
        self._add_recent(str(Path(loaded.path).resolve()))
        self.statusBar().showMessage(f"Opened {Path(loaded.path).name}", 5000)
        return True

    @Slot()
    def open_dialog(self) -> None:
        start = str(self.doc.path.parent) if self.doc.path else ""
        pats = " ".join(f"*{s}" for s in imageio.OPEN_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open image", start, f"Images ({pats});;All files (*)")
        if path:
            self.open_path(path)

    def _add_recent(self, path: str) -> None:
        recent = [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", [path] + recent[:MAX_RECENT - 1])
        self._refresh_recent_menu()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _refresh_recent_menu(self) -> None:
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

    def dragEnterEvent(self, e) -> None:
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:
        files = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if files:
            e.acceptProposedAction()
            self.open_path(files[0])

    def _save_dialog(self, title: str, suffix: str) -> Path | None:
        stem = self.doc.path.stem if self.doc.path else "image"
        folder = self.doc.path.parent if self.doc.path else Path.home()
        path, chosen = QFileDialog.getSaveFileName(self, title, str(folder / f"{stem}{suffix}.png"),
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
            answer = QMessageBox.question(self, "Overwrite the original?",
                                          f"{path.name} is the image you opened. Replace it with the edited "
                                          "image? This cannot be undone.", QMessageBox.Yes | QMessageBox.No,
                                          QMessageBox.No)
            if answer != QMessageBox.Yes:
                return None
        try:
            out = {"image": export.export_image, "mask": export.export_mask, "strip": export.export_strip}[kind](
                self.doc, path)
        except InpaintError as exc:
            self.error("Export failed", str(exc))
            return None
        if kind == "image":
            self._exported_clean = True
        self.statusBar().showMessage(f"Exported {out}", 5000)
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

    # ----- jobs ----------------------------------------------------------------------------------------------
    @Slot()
    def fill(self) -> int | None:
        """Start a job with the panel's model and settings; returns its id, or None after an error dialog.

        While the same model learns this image (``learn``), Fill does not restart it: it is started when the
        learning ends (and then finds the weights learned), and the learn job's id is returned."""
        return self._fill()

    def _fill(self, after_learn: bool = False) -> int | None:
        info = self.model_panel.info
        if info is None:
            return None
        learning = self._learning(info.name)
        if learning is not None and self.doc.mask.any():
            self._fill_after = learning.id
            self.progress.fill_button.setText("Fill when learned")
            self.statusBar().showMessage("Fill starts when the learning ends; keep painting until then")
            return learning.id
        if not self.doc.mask.any():
            self.error("Nothing to fill", "The mask is empty: paint the area to fill first (B = mask brush).")
            return None
        if not info.weights_present:
            self.error("Model not available", f"{info.title}: weights not found at {info.weights}")
            return None
        if info.uses_region and self._region_source == "default":  # no face found, not moved: follow the mask
            self.doc.set_region(self.doc.default_region(self._region_side()))
        params = self.model_panel.params()
        if after_learn and "relearn" in params:  # it has just learned: "Relearn" must not throw that away
            params["relearn"] = False
        req = self.doc.request(self.model_panel.seed.value(), params,
                               self.model_panel.attributes(), self.model_panel.prompt.text(), info.uses_region)
        job_id = self.jobs.start(info.name, req, info.instant)  # first, so the worker starts while the widgets update
        self._doing = "Fill"
        if not info.instant:  # an instant refill keeps the old result up until the new one lands: no flicker
            self.doc.show_result(None)
        self.progress.set_busy(True, info.learns_on_image, info.instant, keep_curve=after_learn)
        self.statusBar().showMessage(f"Filling with {info.title}, seed {req.seed}...")
        return job_id

    @Slot()
    def learn(self) -> int | None:
        """Learn the open image with the panel's model and settings, without filling, so the learning overlaps the
        painting of the mask. The mask painted so far (possibly none) is kept out of learning, as a Fill would.
        Returns the job id, or None when the model does not learn on the image."""
        info = self.model_panel.info
        if info is None or not info.learns_on_image:
            return None
        if (learning := self._learning(info.name)) is not None:
            self.statusBar().showMessage("Already learning this image", 4000)  # a restart would lose its progress
            return learning.id
        req = self.doc.request(self.model_panel.seed.value(), self.model_panel.params(), {})
        self._fill_after = None
        job_id = self.jobs.start(info.name, req, kind="learn")
        self._doing = "Learning"
        self.progress.set_busy(True, learns=True)
        self.progress.fill_button.setText("Fill when learned")
        said = "Learning the image: keep painting the mask, then Fill"  # short: the status bar cuts long lines
        max_hole = req.params.get("max_hole")
        if max_hole and not req.mask.any() and max(req.image.shape[:2]) > max_hole:
            said += f" (no mask yet: a hole wider than {max_hole} px is learned again, smaller)"
        self.statusBar().showMessage(said)
        return job_id

    def _learning(self, model: str) -> Job | None:
        """The running learn job of ``model``, if any."""
        job = self.jobs.job
        return job if job is not None and job.kind == "learn" and job.model == model else None

    @Slot()
    def fill_variation(self) -> int | None:
        self.model_panel.new_seed()
        return self.fill()

    @Slot(object)
    def _on_preview(self, p: Preview) -> None:
        self.doc.set_preview(p.image, p.box)

    @Slot(object, object)
    def _on_job_finished(self, result: Result | dict, job: Job) -> None:
        self.doc.clear_preview()
        if job.kind == "learn":
            how = "loaded from the cache" if result.get("cached") else f"learned in {result.get('wall', 0.0):.0f} s"
            self.progress.finish(f"done: {how}")
            if self._fill_after == job.id:
                self._fill_after = None
                self._fill(after_learn=True)
            else:
                self.statusBar().showMessage(f"Image {how}: Fill starts from it", 8000)
            return
        replace = self._replace[1] if self._replace is not None and self._replace[0] == job.id else None
        self._replace = None
        self.doc.add_result(HistoryItem.from_result(result, job.request), replace)
        total = result.timings.get("total", 0.0)
        self.progress.finish(f"done in {total:.2f} s")
        self.statusBar().showMessage(f"{result.model}: filled in {total:.2f} s (seed {result.seed}); "
                                     "Ctrl+Shift+A accepts, C compares", 8000)

    @Slot(str)
    def _on_job_failed(self, message: str) -> None:
        self._toggle_t0 = None
        self._fill_after = None
        self.doc.clear_preview()
        self.progress.finish("failed")
        self.error(f"{self._doing} failed", message)

    @Slot()
    def _on_job_cancelled(self) -> None:
        self._toggle_t0 = None
        self._fill_after = None
        self.doc.clear_preview()
        self.progress.finish("cancelled")
        self.statusBar().showMessage(f"{self._doing} cancelled", 4000)

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.act_cancel.setEnabled(busy)
        self.progress.cancel_button.setEnabled(busy)
        self.progress.fill_button.setText("Restart fill" if busy else "Fill")

    @Slot(str, bool)
    def _on_attribute_toggled(self, name: str, on: bool) -> None:
        info = self.model_panel.info
        if info is not None and info.instant and self.doc.mask.any():
            self._toggle_t0 = time.perf_counter()
            # Flipping toggles on one hole refines one result instead of filling the strip with near-copies.
            shown = self.doc.shown_item()
            same = (shown is not None and not shown.accepted and shown.model == info.name
                    and np.array_equal(shown.mask, self.doc.mask))
            job_id = self.fill()
            self._replace = (job_id, self.doc.shown) if same and job_id is not None else None

    @Slot(float)
    def _on_canvas_painted(self, t: float) -> None:
        if self._toggle_t0 is not None and self.doc.shown is not None and not self.jobs.busy:
            self.last_toggle_latency = t - self._toggle_t0
            self._toggle_t0 = None
            self.statusBar().showMessage(f"Refilled in {self.last_toggle_latency * 1000:.0f} ms", 4000)

    @Slot(int)
    def accept_result(self, index: int) -> None:
        self.doc.accept_result(index)
        self._exported_clean = False
        self.statusBar().showMessage("Result applied (Ctrl+Z undoes it)", 5000)

    @Slot()
    def _accept_shown(self) -> None:
        if self.doc.shown is not None and not self.doc.results[self.doc.shown].accepted:
            self.accept_result(self.doc.shown)

    @Slot()
    def _discard_shown(self) -> None:
        if self.doc.shown is not None:
            self.doc.discard_result(self.doc.shown)

    @Slot(str)
    def _on_model_changed(self, name: str | None) -> None:
        if name is None:
            return
        if self.jobs.busy:
            self.jobs.cancel()
        info = registry.get_info(name)
        self.jobs.warm_up(name)
        self.act_learn.setEnabled(info.learns_on_image)
        self.canvas.region_visible = info.uses_region
        self.tool_actions["region"].setEnabled(info.uses_region)
        if info.uses_region:
            self._place_region()
        elif self.canvas.tool == "region":
            self.tool_actions["brush"].trigger()
        self.canvas.update()

    def _region_side(self) -> int:
        info = self.model_panel.info
        return info.resolution * 2 if info.resolution else 256

    def _place_region(self) -> None:
        """Centre the box on the mask now; move it to the model's suggestion (e.g. the face) when that arrives.
        Until then, or when there is none, the box follows the mask at each Fill."""
        self._region_source = "default"
        self.doc.set_region(self.doc.default_region(self._region_side()))
        self.jobs.detect_region(self.model_panel.info.name, self.doc.image)

    @Slot(object)
    def _on_region_suggested(self, region) -> None:
        info = self.model_panel.info
        if region is not None and info is not None and info.uses_region and self._region_source == "default":
            self._region_source = "detected"
            self.doc.set_region(tuple(int(v) for v in region))

    @Slot()
    def _on_region_dragged(self) -> None:
        self._region_source = "user"

    # ----- mask and sketch -----------------------------------------------------------------------------------
    @Slot()
    def _grow(self) -> None:
        self.doc.grow_mask(8)

    @Slot()
    def _shrink(self) -> None:
        self.doc.grow_mask(-8)

    @Slot()
    def _feather(self) -> None:
        self.doc.feather_mask(6)

    @Slot()
    def sketch_from_edges(self) -> None:
        try:
            from engine.sketch.edges import sketch_from_image
        except ImportError:
            self.error("Not available", "Edge sketching (engine.sketch.edges) is not installed in this build.")
            return
        try:
            strokes = sketch_from_image(self.doc.image)
        except InpaintError as exc:
            self.error("Sketch from edges failed", str(exc))
            return
        self.doc.set_sketch_from(strokes)

    # ----- view and tools ------------------------------------------------------------------------------------
    @Slot()
    def _on_tool(self) -> None:
        tool = self.sender().data()
        self.canvas.set_tool(tool)
        self.statusBar().showMessage(f"{TOOL_KEYS[tool][0]}: {TOOL_HINTS[tool]}; space-drag pans, "
                                     "hold \\ or O for the original", 8000)

    @Slot()
    def _smaller(self) -> None:
        self.size_spin.setValue(max(1, int(self.size_spin.value() / 1.25)))

    @Slot()
    def _larger(self) -> None:
        self.size_spin.setValue(max(self.size_spin.value() + 1, int(self.size_spin.value() * 1.25)))

    @Slot(int)
    def _on_size(self, v: int) -> None:
        self.canvas.brush_size = float(v)
        self.canvas.update()

    @Slot(int)
    def _on_opacity(self, v: int) -> None:
        self.canvas.mask_opacity = v / 100
        self.canvas.update()

    @Slot()
    def _pick_mask_color(self) -> None:
        c = QColorDialog.getColor(self.canvas.mask_color, self, "Mask colour")
        if c.isValid():
            self.canvas.set_colors(mask=c)
            self._paint_color_button(self.mask_color_btn, c)

    @Slot()
    def _pick_sketch_color(self) -> None:
        c = QColorDialog.getColor(self.canvas.sketch_color, self, "Sketch colour")
        if c.isValid():
            self.canvas.set_colors(sketch=c)
            self._paint_color_button(self.sketch_color_btn, c)

    @Slot()
    def _zoom_in(self) -> None:
        self.canvas.zoom_at(self.canvas.zoom * 1.25, self.canvas.rect().center())

    @Slot()
    def _zoom_out(self) -> None:
        self.canvas.zoom_at(self.canvas.zoom / 1.25, self.canvas.rect().center())

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
        if self.model_panel.info is not None and self.model_panel.info.uses_region:
            self._place_region()
        self._update_title()

    @Slot(str)
    def _on_undo_text(self, text: str) -> None:
        self.act_undo.setToolTip(f"Undo {text} (Ctrl+Z)" if text else "Undo (Ctrl+Z)")

    @Slot(str)
    def _on_redo_text(self, text: str) -> None:
        self.act_redo.setToolTip(f"Redo {text} (Ctrl+Shift+Z)" if text else "Redo (Ctrl+Shift+Z)")

    @Slot()
    def _update_title(self) -> None:
        name = self.doc.path.name if self.doc.path else "untitled"
        self.setWindowTitle(f"{name}{'' if self.doc.undo_stack.isClean() else ' *'} - Inpaint Studio")

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

    # ----- dialogs and shutdown ------------------------------------------------------------------------------
    @Slot()
    def _report_model_error(self) -> None:
        self.error("Models unavailable", self.model_panel.load_error)

    def error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(message, 8000)
        QMessageBox.critical(self, title, message)

    def _confirm_discard(self, doing: str) -> bool:
        if self._exported_clean:
            return True
        answer = QMessageBox.question(self, "Discard changes?", f"Accepted fills have not been exported. "
                                      f"Discard them and {doing}?", QMessageBox.Discard | QMessageBox.Cancel,
                                      QMessageBox.Cancel)
        return answer == QMessageBox.Discard

    def closeEvent(self, e: QCloseEvent) -> None:
        if not self._confirm_discard("quit"):
            e.ignore()
            return
        self.jobs.shutdown()  # cancel -> quit() -> wait(): the worker thread ends before the window goes
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        e.accept()
