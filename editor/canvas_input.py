"""The canvas's input: mouse, tablet pen and keys turned into edits of the document (strokes, rectangles, lasso,
Select object, the region box), pans and zooms. A mixin of ``Canvas``, which owns the state these handlers use
(the view settings and the drag in progress); kept apart so each file reads on its own."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QInputDevice, QKeyEvent, QMouseEvent, QTabletEvent, QWheelEvent

from editor.selection import Lasso

ORIGINAL_KEYS = (Qt.Key_Backslash, Qt.Key_O)
BOX_TOOLS = ("rect", "region", "lasso", "polygon", "object")  # a cross cursor, no brush outline
TOOLS = ("brush", "eraser", "rect", "lasso", "polygon", "object", "sketch", "region")


class CanvasInput:
    def _update_cursor(self) -> None:
        if self._drag == "pan":
            self.setCursor(Qt.ClosedHandCursor)
        elif self._space:
            self.setCursor(Qt.OpenHandCursor)
        elif self.tool in BOX_TOOLS:
            self.setCursor(Qt.CrossCursor)
        else:
            self.setCursor(Qt.BlankCursor)  # the brush outline is the cursor

    def set_tool(self, tool: str) -> None:
        assert tool in TOOLS, tool
        if tool != self.tool:
            self.lasso.cancel()
            self.objects.end()
        self.tool = tool
        self._update_cursor()
        self.update()

    # Mouse and tablet input share these three handlers; a tablet's pressure scales the brush.
    def mousePressEvent(self, e: QMouseEvent) -> None:
        if e.source() == Qt.MouseEventNotSynthesized:
            self.pressure = 1.0
        self._press(e.position(), e.button())

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        self._move(e.position())

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        self._release(e.button())

    def mouseDoubleClickEvent(self, e: QMouseEvent) -> None:
        if self.tool == "polygon" and self.lasso.active:  # a double-click closes the polygon at its position
            img = self.widget_to_image(e.position())
            self.lasso.add((img.x(), img.y()))  # (already there when its first press added it)
            self.lasso.finish("Polygon lasso mask")
            self.update()
        else:
            self.mousePressEvent(e)

    def tabletEvent(self, e: QTabletEvent) -> None:
        """A pen: its pressure (where the device reports one) scales the brush; handled here so it is not also
        turned into mouse events."""
        has_pressure = bool(e.pointingDevice() is not None
                            and e.pointingDevice().capabilities() & QInputDevice.Capability.Pressure)
        self.pressure = min(1.0, max(0.05, e.pressure())) if has_pressure else 1.0
        t = e.type()
        if t == QTabletEvent.TabletPress:
            self._press(e.position(), e.button())
        elif t == QTabletEvent.TabletMove:
            self._move(e.position())
        elif t == QTabletEvent.TabletRelease:
            self._release(e.button())
        e.accept()

    def _press(self, pos: QPointF, button) -> None:
        self._press_widget = pos
        self._press_img = self.widget_to_image(pos)
        if self._drag is not None:
            return
        if button == Qt.MiddleButton or (button == Qt.LeftButton and self._space):
            self._drag = "pan"
        elif button in (Qt.LeftButton, Qt.RightButton):
            right = button == Qt.RightButton
            region = self._region_widget_rect()
            img = self._press_img
            if region is not None and not right and (
                    self._handle_rect(region).contains(pos) or self._size_rect(region).contains(pos)
                    or (self.tool == "region" and region.contains(pos))):
                self._drag = "region-size" if self._size_rect(region).contains(pos) else "region-move"
                self._press_region = self.doc.region
            elif self.tool == "region":
                return
            elif self.tool in ("rect", "object"):
                self._drag, self._drag_erase = self.tool, right
                self._rubber = QRectF(img, img)
            elif self.tool == "lasso":
                self._drag = "lasso"
                self.lasso.begin((img.x(), img.y()), right)
            elif self.tool == "polygon":
                self._polygon_click(pos, img, right)
            else:
                self._drag = "stroke"
                self._drag_erase = self.tool == "eraser" or right
                self._last_img = img
                self.doc.begin_stroke("sketch" if self.tool == "sketch" else "mask")
                pt = (img.x(), img.y())
                self.doc.stroke_segment(pt, pt, self._diameter(), self._drag_erase, self._hardness())
        self._update_cursor()

    def _polygon_click(self, pos: QPointF, img: QPointF, right: bool) -> None:
        lasso = self.lasso
        if not lasso.active:
            lasso.begin((img.x(), img.y()), right)
        else:
            first = self.image_to_widget(QPointF(*lasso.points[0]))
            if len(lasso.points) >= 3 and (first - pos).manhattanLength() <= Lasso.CLOSE_PX:
                lasso.finish("Polygon lasso mask")
            else:
                lasso.add((img.x(), img.y()))
        self.update()

    def _diameter(self) -> float:
        base = max(1.0, self.brush_size / 4) if self.tool == "sketch" else self.brush_size
        return max(1.0, base * self.pressure)

    def _hardness(self) -> float:
        return 1.0 if self.tool == "sketch" else self.hardness  # the sketch pen stays a crisp line

    def _move(self, pos: QPointF) -> None:
        old = self._mouse
        self._mouse = pos
        img = self.widget_to_image(pos)
        w, h = self.doc.size
        inside = 0 <= img.x() < w and 0 <= img.y() < h
        self.cursor_moved.emit(int(img.x()) if inside else -1, int(img.y()) if inside else -1)
        if self._drag == "pan":
            self._fit_mode = False
            self.offset += pos - self._press_widget
            self._press_widget = pos
            self.update()
        elif self._drag == "stroke":
            a, b = self._last_img, img
            self.doc.stroke_segment((a.x(), a.y()), (b.x(), b.y()), self._diameter(), self._drag_erase,
                                    self._hardness())
            self._last_img = img
        elif self._drag in ("rect", "object"):
            self._rubber = QRectF(self._rubber.topLeft(), img)
            self.update()
        elif self._drag == "lasso":
            self.lasso.add((img.x(), img.y()))
            self.update()
        elif self._drag in ("region-move", "region-size"):
            self._drag_region(pos)
        if self.tool == "polygon" and self.lasso.active:
            self.lasso.hover = (img.x(), img.y())
            self.update()
        if self.compare:
            self._split_x = min(1.0, max(0.0, pos.x() / max(1, self.width())))
            self.update()
        elif self._drag != "pan":
            r = self._diameter() * self.zoom / 2 + 4
            for c in (old, pos):
                self.update(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r).toAlignedRect())

    def _drag_region(self, pos: QPointF) -> None:
        x0, y0, x1, y1 = self._press_region
        d = (pos - self._press_widget) / self.zoom
        w, h = self.doc.size
        if self._drag == "region-move":
            dx = int(round(min(max(d.x(), -x0), w - x1)))
            dy = int(round(min(max(d.y(), -y0), h - y1)))
            self.doc.set_region((x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        else:  # keep it square: the models that use a region work on square crops
            side = int(round(max(16, min(x1 - x0 + max(d.x(), d.y()), w - x0, h - y0))))
            self.doc.set_region((x0, y0, x0 + side, y0 + side))

    def _release(self, button) -> None:
        drag, self._drag = self._drag, None
        if drag in ("region-move", "region-size"):
            self.region_dragged.emit()
        elif drag == "stroke":
            what = "sketch" if self.tool == "sketch" else "mask"
            verb = "Erase" if self._drag_erase else ("Sketch" if what == "sketch" else "Paint")
            self.doc.end_stroke(f"{verb} {what} stroke")
        elif drag == "lasso":
            self.lasso.finish("Lasso mask")
            self.update()
        elif drag in ("rect", "object") and self._rubber is not None:
            r = self._rubber.normalized()
            self._rubber = None
            x0, y0 = int(round(max(0, r.left()))), int(round(max(0, r.top())))
            x1, y1 = int(round(r.right())), int(round(r.bottom()))
            if drag == "rect":
                new = self.doc.mask.copy()
                new[y0:max(y0, y1), x0:max(x0, x1)] = 0 if self._drag_erase else 255
                self.doc.set_layer("mask", new, "Rectangle erase" if self._drag_erase else "Rectangle mask")
            elif r.width() * self.zoom >= 6 and r.height() * self.zoom >= 6:  # a box: a new object
                self.objects.start((x0, y0, x1, y1), subtract=self._drag_erase)
            elif self.objects.active:  # a click: include (left) or exclude (right) this part
                self.objects.click((self._press_img.x(), self._press_img.y()), include=not self._drag_erase)
            self.update()
        self._update_cursor()

    def finish_selection(self) -> bool:
        """Enter: close the polygon; True when there was one."""
        if self.tool == "polygon" and self.lasso.active:
            self.lasso.finish("Polygon lasso mask")
            self.update()
            return True
        return False

    def cancel_selection(self) -> bool:
        """Esc: drop the polygon being drawn or end the object session; True when there was one."""
        if self.lasso.active or self.objects.active:
            self.lasso.cancel()
            self.objects.end()
            self.update()
            return True
        return False

    def wheelEvent(self, e: QWheelEvent) -> None:
        steps = e.angleDelta().y() / 120
        if steps:
            self.zoom_at(self.zoom * 1.25 ** steps, e.position())

    def leaveEvent(self, event) -> None:
        self._mouse = QPointF(-1, -1)
        self.cursor_moved.emit(-1, -1)
        self.update()

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.isAutoRepeat():
            return
        if e.key() == Qt.Key_Space:
            self._space = True
            self._update_cursor()
        elif e.key() in ORIGINAL_KEYS and e.modifiers() == Qt.NoModifier:
            self.show_original = True
            self.update()
        elif e.key() in (Qt.Key_Return, Qt.Key_Enter) and e.modifiers() == Qt.NoModifier and self.finish_selection():
            pass
        elif e.key() == Qt.Key_Escape and self.cancel_selection():
            pass
        elif e.key() == Qt.Key_Backspace and self.tool == "polygon" and len(self.lasso.points) > 1:
            self.lasso.points.pop()  # take back the last corner
            self.update()
        else:
            super().keyPressEvent(e)

    def keyReleaseEvent(self, e: QKeyEvent) -> None:
        if e.isAutoRepeat():
            return
        if e.key() == Qt.Key_Space:
            self._space = False
            self._update_cursor()
        elif e.key() in ORIGINAL_KEYS:
            self.show_original = False
            self.update()
        else:
            super().keyReleaseEvent(e)
