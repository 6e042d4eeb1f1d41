"""Selection tools that write into the mask: the lasso (freehand and polygon) and Select object.

Both write their selection into the mask at once, as one undo step ("Lasso mask", "Select object"), so nothing
is pending that a tool switch could lose. Select object keeps a short session: a box (dragged), then include
(left) and exclude (right) clicks refine the object, each refinement replacing the session's last step in the
undo stack; a new box, another tool or Esc ends the session. The segmenter (``engine.select``: GrabCut, or a
learned one from the models folder) runs on its own thread, so a click never stalls painting; only the newest
request is answered.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QPointF, QRectF, Qt, QThread, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF

from editor.document import Document
from engine import select

Point = tuple[float, float]


class SegmentWorker(QObject):
    done = Signal(int, object, str)  # request id, H x W bool (or None), error text

    @Slot(int, object, object, object, object, object)
    def run(self, request_id: int, segmenter, image, box, include, exclude) -> None:
        try:
            self.done.emit(request_id, segmenter.segment(image, box, include, exclude), "")
        except Exception as exc:  # a segmenter that fails costs the selection, not the editor
            self.done.emit(request_id, None, f"{type(exc).__name__}: {exc}".splitlines()[0])


class ObjectSelection(QObject):
    """Box + include / exclude clicks -> the object added to (or, dragged with the right button, taken out of)
    the mask. ``changed`` asks the canvas to redraw the box and the clicks."""

    changed = Signal()
    busy_changed = Signal(bool)
    status = Signal(str)
    _request = Signal(int, object, object, object, object, object)

    def __init__(self, doc: Document, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.segmenter: select.Segmenter = select.segmenters()[0]
        self.box: tuple[int, int, int, int] | None = None
        self.include: list[Point] = []
        self.exclude: list[Point] = []
        self.subtract = False
        self._id = 0
        self._pending: int | None = None
        self._base: np.ndarray | None = None  # the mask before this session
        self._step_index: int | None = None  # undo-stack index just after the session's last step
        self._thread = QThread()
        self._thread.setObjectName("segmenter")
        self._worker = SegmentWorker()
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.run)
        self._worker.done.connect(self._on_done)
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        doc.image_replaced.connect(self.end)

    @property
    def active(self) -> bool:
        return self.box is not None

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def use_models_dir(self, folder) -> None:
        """Prefer a learned segmenter found in the user's models folder; GrabCut otherwise."""
        self.segmenter = select.segmenters(folder)[0]

    def start(self, box: tuple[int, int, int, int], subtract: bool = False) -> None:
        """A new object: the box (image pixels), then segment."""
        self.end()
        x0, y0, x1, y1 = box
        self.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self.subtract = subtract
        self._base = self.doc.mask.copy()
        self._run()

    def click(self, point: Point, include: bool) -> None:
        """Refine the current object: this pixel is (include) or is not (exclude) part of it."""
        if self.box is None:
            return
        (self.include if include else self.exclude).append((float(point[0]), float(point[1])))
        self._run()

    def end(self) -> None:
        """The session ends; its last step stays in the mask (and in the undo stack)."""
        if self.box is not None or self.include or self.exclude:
            self.box, self.include, self.exclude = None, [], []
            self._base = self._step_index = None
            self._set_pending(None)
            self.changed.emit()

    def _run(self) -> None:
        self._id += 1
        self._set_pending(self._id)
        self.changed.emit()
        self._request.emit(self._id, self.segmenter, self.doc.image.copy(), self.box, list(self.include),
                           list(self.exclude))

    def _set_pending(self, value: int | None) -> None:
        was = self.busy
        self._pending = value
        if was != self.busy:
            self.busy_changed.emit(self.busy)

    @Slot(int, object, str)
    def _on_done(self, request_id: int, selected, error: str) -> None:
        if request_id != self._pending or self.box is None:
            return  # a newer click is on its way, or the session ended
        self._set_pending(None)
        if selected is None:
            self.status.emit(f"Select object failed: {error}")
            return
        if selected.shape != self.doc.mask.shape or self._base is None or self._base.shape != selected.shape:
            return
        stack = self.doc.undo_stack
        if self._step_index is not None and stack.index() == self._step_index:
            stack.undo()  # a refinement replaces the session's last step
        alpha = selected.astype(np.uint8) * 255
        new = np.minimum(self._base, 255 - alpha) if self.subtract else np.maximum(self._base, alpha)
        verb = "Deselect object" if self.subtract else "Select object"
        self.doc.set_layer("mask", new, verb)
        self._step_index = stack.index()
        self.changed.emit()
        self.status.emit(f"{verb}: left click adds a part, right click removes one; drag a new box for another "
                         f"object ({self.segmenter.title})")

    @Slot()
    def shutdown(self) -> None:
        self._thread.quit()
        self._thread.wait()


class Lasso:
    """The lasso's points while it is drawn (image pixels); the canvas feeds it input and draws it.

    Freehand: press, drag around the area, release. Polygon: click the corners; double-click, Enter or a click on
    the first corner closes it; Esc drops it. The right button (on the first point) takes the area out of the
    mask."""

    CLOSE_PX = 8  # a click this close (screen pixels) to the first corner closes the polygon

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.points: list[Point] = []
        self.subtract = False
        self.hover: Point | None = None  # the polygon's next corner under the cursor

    @property
    def active(self) -> bool:
        return bool(self.points)

    def begin(self, point: Point, subtract: bool) -> None:
        self.points, self.subtract, self.hover = [point], subtract, None

    def add(self, point: Point) -> None:
        if not self.points or np.hypot(point[0] - self.points[-1][0], point[1] - self.points[-1][1]) >= 0.5:
            self.points.append(point)

    def finish(self, text: str) -> bool:
        """Close the outline and write it into the mask (one undo step); False when it encloses nothing."""
        points, self.points, self.hover = self.points, [], None
        if len(points) < 3:
            return False
        area = select.polygon_mask(self.doc.mask.shape, points)
        return self.doc.add_to_mask(area, ("Lasso erase" if self.subtract else text), subtract=self.subtract)

    def cancel(self) -> None:
        self.points, self.hover = [], None


# ----- drawing (the canvas calls these in widget coordinates, after the image) -----------------------------------
def paint_lasso(p: QPainter, canvas, lasso: Lasso) -> None:
    """The outline being drawn: a dashed line through the points (and, for the polygon, on to the cursor), with
    the first corner marked where a click closes it."""
    if not lasso.points:
        return
    pts = [canvas.image_to_widget(QPointF(x, y)) for x, y in lasso.points]
    if lasso.hover is not None:
        pts.append(canvas.image_to_widget(QPointF(*lasso.hover)))
    color = QColor(255, 255, 255) if not lasso.subtract else QColor(255, 120, 120)
    for pen in (QPen(QColor(0, 0, 0, 200), 3), QPen(color, 1.5, Qt.DashLine)):
        p.setPen(pen)
        p.drawPolyline(QPolygonF(pts))
    if canvas.tool == "polygon":
        p.setBrush(color)
        p.drawEllipse(pts[0], 4, 4)
        p.setBrush(Qt.NoBrush)


def paint_object(p: QPainter, canvas, sel: ObjectSelection) -> None:
    """The object's box, its include (green +) and exclude (red -) clicks, and a "working" tag while the
    segmenter runs."""
    if sel.box is None:
        return
    x0, y0, x1, y1 = sel.box
    r = canvas.image_to_widget_rect(QRectF(x0, y0, x1 - x0, y1 - y0))
    p.setBrush(Qt.NoBrush)
    p.setPen(QPen(QColor(0, 0, 0, 200), 3))
    p.drawRect(r)
    p.setPen(QPen(QColor(120, 220, 255), 1.5, Qt.DashLine))
    p.drawRect(r)
    for pts, color, sign in ((sel.include, QColor(60, 220, 90), "+"), (sel.exclude, QColor(240, 70, 70), "-")):
        for x, y in pts:
            c = canvas.image_to_widget(QPointF(x, y))
            p.setPen(QPen(QColor(0, 0, 0), 1.5))
            p.setBrush(color)
            p.drawEllipse(c, 7, 7)
            p.setPen(QColor(0, 0, 0))
            p.drawText(QRectF(c.x() - 7, c.y() - 8, 14, 14), Qt.AlignCenter, sign)
    p.setBrush(Qt.NoBrush)
    if sel.busy:
        p.setPen(QColor(120, 220, 255))
        p.drawText(QRectF(r.left(), r.top() - 18, 200, 16), Qt.AlignLeft, "selecting...")
