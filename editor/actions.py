"""Every menu command and keyboard shortcut: the menu bar, the tools bar on the left, the options bar on top, and
the small slots behind them (mask operations, zoom, tool switching, accept / discard). Help > Keyboard and mouse
is built from these actions, so it cannot drift from the real bindings."""
from __future__ import annotations

from functools import partial

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QStyle, QToolBar, QWidget

from editor.canvas import Canvas
from editor.icons import icon
from editor.options_bar import OptionsBar
from editor.panels.history_panel import HistoryPanel
from editor.session import Session
from engine.api import InpaintError

TOOL_KEYS = {"brush": ("Mask brush", "B"), "eraser": ("Mask eraser", "E"), "rect": ("Rectangle mask", "R"),
             "lasso": ("Lasso", "L"), "polygon": ("Polygon lasso", "Shift+L"), "object": ("Select object", "S"),
             "sketch": ("Sketch pen", "P"), "region": ("Move region box", "G")}
TOOL_HINTS = {"brush": "left button paints the mask, right button erases; [ and ] change the size, Shift+[ and "
                       "Shift+] the hardness (soft edge); a tablet pen's pressure scales it",
              "eraser": "erases the mask; [ and ] change the size",
              "rect": "drag a rectangle to mask it; right button drag removes it",
              "lasso": "drag around the area to mask it; with the right button it is taken out of the mask",
              "polygon": "click the corners; double-click, Enter or a click on the first corner closes it; "
                         "Backspace takes back a corner, Esc drops it; right button on the first corner removes",
              "object": "drag a box around an object: it is selected into the mask; then left-click a missed part, "
                        "right-click a wrong one; Esc ends (GrabCut: no segmentation weights are reachable here)",
              "sketch": "draw the strokes the fill should follow (own layer); right button erases them",
              "region": "drag the box the model works on; the square handle resizes it"}


def make_action(window: QWidget, text: str, slot, shortcut=None, tip: str = "", icon_=None,
                checkable: bool = False) -> QAction:
    """An action whose shortcut works whatever widget has the focus; its tooltip names the keys."""
    a = QAction(text, window)
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
    window.addAction(a)
    return a


def _name_step(action: QAction, verb: str, keys: str, step: str) -> None:
    """Undo / redo tooltips name the step ("Undo Brush stroke (Ctrl+Z)"); the label stays fixed."""
    action.setToolTip(f"{verb} {step} ({keys})" if step else f"{verb} ({keys})")


class Actions(QObject):
    """Builds the window's menus and tool bars; its attributes are the actions (``fill``, ``learn``, ``tools``
    ...) and ``options`` (the options bar with the brush size)."""

    def __init__(self, window: QMainWindow, session: Session, canvas: Canvas, history: HistoryPanel, files,
                 gpu: QAction, models_folder: QAction | None = None, no_models_folder: QAction | None = None,
                 compute: QAction | None = None) -> None:
        super().__init__(window)
        self.window, self.session, self.doc, self.canvas, self.files = window, session, session.doc, canvas, files
        w, act, st = window, make_action, window.style()
        mb = window.menuBar()
        f = mb.addMenu("&File")
        self.open = act(w, "&Open...", files.open_dialog, QKeySequence.Open, "Open an image or a project",
                        st.standardIcon(QStyle.SP_DialogOpenButton))
        f.addAction(self.open)
        f.addMenu(files.recent_menu)
        f.addSeparator()
        self.save = act(w, "&Save project", files.save_project, QKeySequence.Save,
                        "Save image, mask, sketch and every result in one project file")
        f.addAction(self.save)
        f.addAction(act(w, "Save project &as...", files.save_project_as, QKeySequence.SaveAs,
                        "Save the project to another file"))
        f.addSeparator()
        self.export = act(w, "&Export image...", files.export_image_dialog, "Ctrl+Shift+E",
                          "Export the image with the shown result (PNG/JPEG/WebP)",
                          st.standardIcon(QStyle.SP_DialogSaveButton))
        f.addAction(self.export)
        f.addAction(act(w, "Export &mask...", files.export_mask_dialog, "Ctrl+Shift+M", "Export the mask"))
        f.addAction(act(w, "Export &strip...", files.export_strip_dialog, "Ctrl+Shift+T",
                        "Export original | masked | result side by side"))
        f.addSeparator()
        for a in (models_folder, no_models_folder):
            if a is not None:
                f.addAction(a)
        f.addSeparator()
        f.addAction(act(w, "&Quit", window.close, QKeySequence.Quit))

        e = mb.addMenu("&Edit")
        # Own actions rather than QUndoStack.createUndoAction: a fixed label keeps the toolbar from jumping;
        # the tooltip names the step.
        stack = self.doc.undo_stack
        self.undo = act(w, "&Undo", stack.undo, "Ctrl+Z", "Undo", icon("undo"))
        self.redo = act(w, "&Redo", stack.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo", icon("redo"))
        stack.canUndoChanged.connect(self.undo.setEnabled)
        stack.canRedoChanged.connect(self.redo.setEnabled)
        # partials, not methods of this object: a stack with steps says it is cleared when the window is destroyed,
        # possibly after the garbage collector has emptied this object
        stack.undoTextChanged.connect(partial(_name_step, self.undo, "Undo", "Ctrl+Z"))
        stack.redoTextChanged.connect(partial(_name_step, self.redo, "Redo", "Ctrl+Shift+Z"))
        self.undo.setEnabled(False)
        self.redo.setEnabled(False)
        e.addAction(self.undo)
        e.addAction(self.redo)
        e.addSeparator()
        self.copy = act(w, "&Copy result", files.copy_result, QKeySequence.Copy,
                        "Copy the shown result (or the image) to the clipboard")
        self.paste = act(w, "&Paste image", files.paste, QKeySequence.Paste,
                         "Paste the clipboard's image as a new document")
        e.addAction(self.copy)
        e.addAction(self.paste)

        im = mb.addMenu("&Image")
        self.expand = act(w, "&Expand canvas...", self.expand_canvas, "Ctrl+Alt+C",
                          "Add a border (per side or to an aspect ratio) and mask it, to fill it (outpainting)")
        im.addAction(self.expand)

        m = mb.addMenu("&Mask")
        m.addAction(act(w, "&Invert", self.doc.invert_mask, "Ctrl+I", "Invert the mask"))
        m.addAction(act(w, "&Clear", self.doc.clear_mask, "Ctrl+D", "Clear the mask"))
        m.addAction(act(w, "&Grow 8 px", self._grow, "Ctrl+Alt+=", "Grow the mask by 8 pixels"))
        m.addAction(act(w, "&Shrink 8 px", self._shrink, "Ctrl+Alt+-", "Shrink the mask by 8 pixels"))
        m.addAction(act(w, "&Feather 6 px", self._feather, "Ctrl+Alt+F",
                        "A soft edge: the fill fades into the photo across the outline"))
        m.addSeparator()
        m.addAction(act(w, "Sketch from image &edges", self.sketch_from_edges, "Ctrl+Alt+E",
                        "Trace the image's edges onto the sketch layer (inside the mask if there is one)"))
        m.addAction(act(w, "Clear s&ketch", self.doc.clear_sketch, "Ctrl+Shift+D", "Clear the sketch layer"))

        v = mb.addMenu("&View")
        v.addAction(act(w, "Zoom to &fit", canvas.fit, "Ctrl+0", "Fit the image in the window"))
        v.addAction(act(w, "&Actual size (100%)", canvas.actual_size, "Ctrl+1", "One image pixel per screen pixel"))
        v.addAction(act(w, "Zoom &in", self._zoom_in, ["Ctrl++", "Ctrl+="], "Zoom in"))
        v.addAction(act(w, "Zoom &out", self._zoom_out, "Ctrl+-", "Zoom out"))
        v.addSeparator()
        self.compare = act(w, "&Compare with before", history.compare_button.toggle, "C",
                           "Split view between the image before and the shown result")
        v.addAction(self.compare)
        hold = QAction("Hold \\ or O: show the original", w)
        hold.setEnabled(False)
        v.addAction(hold)

        fm = mb.addMenu("F&ill")
        self.fill = act(w, "&Fill", session.fill, ["Ctrl+Return", "Ctrl+Enter"],
                        "Fill the masked area with the selected model", icon("fill"))
        self.variation = act(w, "New &variation", session.variation, "Ctrl+Shift+Return", "Random seed, fill again",
                             icon("variation"))
        self.learn = act(w, "&Learn this image", session.learn, "Ctrl+L",
                         "Learn the image now, in the background, while you paint the mask; Fill then starts from "
                         "what was learned (models that learn the image)", icon("learn"))
        self.learn.setIconText("Learn")  # the toolbar's label; menus keep the full text
        self.cancel = act(w, "&Cancel", self._escape, "Esc", "Stop the running fill or learning", icon("cancel"))
        self.cancel.setEnabled(False)
        self.accept = act(w, "&Accept result", self._accept_shown, "Ctrl+Shift+A",
                          "Apply the shown result to the image (one undo step)")
        self.discard = act(w, "&Discard result", self._discard_shown, "Delete", "Remove the shown result")
        for a in (self.fill, self.variation, self.learn, self.cancel, self.accept, self.discard):
            fm.addAction(a)
        fm.addSeparator()
        self.gpu = gpu
        fm.addAction(gpu)
        if compute is not None:
            fm.addAction(compute)

        # Tools: a vertical bar on the left, one exclusive group.
        bar = QToolBar("Tools", w)
        bar.setObjectName("toolsBar")
        bar.setMovable(False)
        bar.setIconSize(bar.iconSize() * 1.25)
        window.addToolBar(Qt.LeftToolBarArea, bar)
        group = QActionGroup(w)
        self.tools: dict[str, QAction] = {}
        tm = mb.addMenu("&Tools")
        for name, (label, key) in TOOL_KEYS.items():
            erases = " (right button erases)" if name in ("brush", "sketch") else ""
            a = act(w, label, self._on_tool, key, label + erases, icon(name), checkable=True)
            a.setData(name)
            group.addAction(a)
            bar.addAction(a)
            tm.addAction(a)
            self.tools[name] = a
        self.tools["brush"].setChecked(True)

        self.options = OptionsBar(canvas, [self.open, self.export, self.undo, self.redo],
                                  [self.learn, self.fill, self.variation, self.cancel], w)
        window.addToolBar(Qt.TopToolBarArea, self.options)
        tm.addSeparator()
        tm.addAction(act(w, "Smaller brush", self.options.smaller, "[", "Brush size down"))
        tm.addAction(act(w, "Larger brush", self.options.larger, "]", "Brush size up"))
        tm.addAction(act(w, "Softer brush", self.options.softer, ["Shift+[", "{", "Shift+{"],
                         "Brush hardness down (soft edge)"))
        tm.addAction(act(w, "Harder brush", self.options.harder, ["Shift+]", "}", "Shift+}"], "Brush hardness up"))
        hm = mb.addMenu("&Help")
        hm.addAction(act(w, "&Keyboard and mouse", self.show_shortcuts, QKeySequence.HelpContents,
                         "All shortcuts and mouse gestures"))
        session.phase_changed.connect(self._on_phase)
        session.model_changed.connect(self._on_model_changed)
        session.region_changed.connect(self._on_region_changed)
        history.accept_requested.connect(self.accept_result)
        history.discard_requested.connect(self.doc.discard_result)
        if session.info is not None:  # picked before these actions existed (the model panel picks the default)
            self._on_model_changed(session.model)

    @Slot()
    def show_shortcuts(self) -> None:
        """A table built from the actions themselves, so it cannot drift from the real key bindings."""
        rows = []
        for menu in self.window.menuBar().findChildren(type(self.files.recent_menu)):
            for a in menu.actions():
                keys = a.shortcut().toString(QKeySequence.NativeText)
                if keys and not a.isSeparator():
                    rows.append(f"<tr><td>{a.text().replace('&', '')}</td><td><b>{keys}</b></td></tr>")
        rows += [f"<tr><td>{what}</td><td><b>{how}</b></td></tr>" for what, how in (
            ("Erase with the current tool", "right button"), ("Pan", "middle button or space + drag"),
            ("Zoom around the cursor", "wheel"), ("Show the original", "hold \\ or O"))]
        QMessageBox.information(self.window, "Keyboard and mouse",
                                "<table cellspacing=4>" + "".join(rows) + "</table>")

    # ----- what the session's state enables ------------------------------------------------------------------
    @Slot(str)
    def _on_phase(self, phase: str) -> None:
        self.cancel.setEnabled(phase != "idle")

    @Slot(str)
    def _on_model_changed(self, name: str) -> None:
        info = self.session.info
        self.learn.setEnabled(info.learns_on_image)
        self.canvas.region_visible = info.uses_region
        self.tools["region"].setEnabled(info.uses_region)
        if not info.uses_region and self.canvas.tool == "region":
            self.tools["brush"].trigger()
        self.canvas.update()

    @Slot(object, str)
    def _on_region_changed(self, region, source: str) -> None:
        """The box's label says where it came from, so a box that jumps to the face a moment later is explained."""
        self.canvas.region_label = ("looking..." if self.session.region_detecting
                                    else "detected" if source == "detected" else "region")
        self.canvas.update()

    # ----- results -------------------------------------------------------------------------------------------
    @Slot(int)
    def accept_result(self, index: int) -> None:
        self.doc.accept_result(index)
        self.files.note_accepted()
        self.window.statusBar().showMessage("Result applied (Ctrl+Z undoes it)", 5000)

    @Slot()
    def _accept_shown(self) -> None:
        if self.doc.shown is not None and not self.doc.results[self.doc.shown].accepted:
            self.accept_result(self.doc.shown)

    @Slot()
    def _discard_shown(self) -> None:
        if self.doc.shown is not None:
            self.doc.discard_result(self.doc.shown)

    # ----- mask, sketch, view, tools -------------------------------------------------------------------------
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
        from engine.edges import sketch_from_image

        try:
            strokes = sketch_from_image(self.doc.image)
        except InpaintError as exc:
            self.window.error("Sketch from edges failed", str(exc))
            return
        self.doc.set_sketch_from(strokes)

    @Slot()
    def _escape(self) -> None:
        """Esc: drop a lasso or object selection in progress, else cancel the running job."""
        if not self.canvas.cancel_selection():
            self.session.cancel()

    @Slot()
    def expand_canvas(self) -> None:
        from editor.dialogs import ExpandDialog

        if self.doc.empty:
            return
        dialog = ExpandDialog(self.doc.size, self.window)
        if dialog.exec() and self.doc.expand_canvas(dialog.pads(), dialog.fill_mode()):
            w, h = self.doc.size
            self.window.statusBar().showMessage(f"Canvas expanded to {w} x {h}: the new border is masked; Fill "
                                                "paints it (Ctrl+Z undoes the expansion)", 8000)

    @Slot()
    def _zoom_in(self) -> None:
        self.canvas.zoom_at(self.canvas.zoom * 1.25, self.canvas.rect().center())

    @Slot()
    def _zoom_out(self) -> None:
        self.canvas.zoom_at(self.canvas.zoom / 1.25, self.canvas.rect().center())

    @Slot()
    def _on_tool(self) -> None:
        tool = self.sender().data()
        self.canvas.set_tool(tool)
        self.window.statusBar().showMessage(f"{TOOL_KEYS[tool][0]}: {TOOL_HINTS[tool]}; space-drag pans, "
                                            "hold \\ or O for the original", 8000)
