"""The canvas: draws the document and turns mouse input into edits. It keeps only view settings (zoom, pan, tool,
colours) and render caches rebuilt from the document's signals; all edited state lives in ``Document``.

Input: left button paints with the current tool, right button erases with it; the middle button or
space + drag pans; the wheel zooms around the cursor; holding backslash or O shows the original image.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal, Slot
from PySide6.QtGui import (QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPainterPath, QPaintEvent, QPen,
                           QResizeEvent, QWheelEvent)
from PySide6.QtWidgets import QWidget

from editor.document import Document, Rect

TOOLS = ("brush", "eraser", "rect", "sketch", "region")
ORIGINAL_KEYS = (Qt.Key_Backslash, Qt.Key_O)
MIN_ZOOM, MAX_ZOOM = 0.02, 32.0


def rgb_qimage(rgb: np.ndarray) -> QImage:
    """An opaque QImage that owns its pixels, in the raster engine's fast format (RGB888 would be converted on
    every scaled draw)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).convertToFormat(QImage.Format_RGB32)


def argb_qimage(rgb: np.ndarray, alpha: np.ndarray) -> QImage:
    """RGB + 0/255 alpha -> an owned ARGB32_Premultiplied QImage (transparent pixels must be black)."""
    h, w = alpha.shape
    bgra = np.zeros((h, w, 4), np.uint8)
    on = alpha > 0
    bgra[on, :3] = rgb[on][:, ::-1]
    bgra[..., 3] = np.where(on, 255, 0)
    return QImage(bgra.data, w, h, 4 * w, QImage.Format_ARGB32_Premultiplied).copy()


class Canvas(QWidget):
    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int)  # image pixel under the cursor (-1, -1 when outside)
    painted = Signal(float)  # perf_counter at the end of each paint: latency measurements hook here
    region_dragged = Signal()  # the user moved or resized the region box

    def __init__(self, doc: Document, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.setMinimumSize(320, 240)
        self.setCursor(Qt.BlankCursor)
        self.tool = "brush"
        self.brush_size = 40.0  # image pixels
        self.mask_color = QColor(255, 40, 90)
        self.mask_opacity = 0.5
        self.sketch_color = QColor(40, 200, 255)
        self.show_original = False  # held key
        self.compare = False  # split view: left of the divider the image before the shown result
        self.region_visible = False
        self.zoom = 1.0
        self.offset = QPointF(0, 0)  # widget position of image pixel (0, 0)
        self._fit_mode = True
        self._space = False
        self._drag: str | None = None  # "pan" | "stroke" | "rect" | "region-move" | "region-size"
        self._drag_erase = False
        self._last_img: QPointF | None = None
        self._press_widget = QPointF()
        self._press_region: Rect | None = None
        self._rubber: QRectF | None = None
        self._mouse = QPointF(-1, -1)
        self._split_x = 0.5  # fraction of the widget width
        self._img_q = self._orig_q = QImage()
        self._mask_q = self._sketch_q = QImage()
        self._mask_px = self._sketch_px = np.zeros((1, 1, 4), np.uint8)  # views of the two overlays' pixels
        self._sketch_empty = True
        self._result_q: QImage | None = None
        self._result_box: Rect | None = None
        self._preview_q: QImage | None = None
        self._outline: QPainterPath | None = None
        doc.image_replaced.connect(self._on_image_replaced)
        doc.layer_changed.connect(self._on_layer_changed)
        doc.shown_result_changed.connect(self._on_shown_result)
        doc.preview_changed.connect(self._on_preview)
        doc.region_changed.connect(self.update)
        self._on_image_replaced()

    # ----- caches --------------------------------------------------------------------------------------------
    @Slot()
    def _on_image_replaced(self) -> None:
        self._rebuild_caches()
        self.fit()

    def _rebuild_caches(self) -> None:
        self._img_q = rgb_qimage(self.doc.image)
        self._orig_q = rgb_qimage(self.doc.original)
        self._mask_q, self._mask_px = self._overlay_image(self.doc.mask, self.mask_color)
        self._sketch_q, self._sketch_px = self._overlay_image(self.doc.sketch, self.sketch_color)
        self._sketch_empty = not self.doc.sketch.any()
        self._outline = None
        self._on_shown_result()
        self._on_preview()

    @staticmethod
    def _overlay(layer: np.ndarray, color: QColor) -> np.ndarray:
        """BGRA bytes = ARGB32_Premultiplied on little-endian machines: alpha is 0 or 255, so no scaling needed."""
        bgra = np.array([color.blue(), color.green(), color.red(), 255], np.uint8)
        return layer[..., None].view(np.uint8) * bgra  # broadcasting: ~10x faster than boolean indexing

    def _overlay_image(self, layer: np.ndarray, color: QColor) -> tuple[QImage, np.ndarray]:
        """An overlay QImage plus a numpy view of its pixels: edits write straight into the image, so a brush
        dab costs only its own rectangle and the overlay is held once, not twice."""
        h, w = layer.shape
        q = QImage(w, h, QImage.Format_ARGB32_Premultiplied)
        px = np.frombuffer(q.bits(), np.uint8).reshape(h, q.bytesPerLine())[:, :4 * w].reshape(h, w, 4)
        px[...] = self._overlay(layer, color)
        return q, px

    @Slot(str, QRect)
    def _on_layer_changed(self, layer: str, rect: QRect) -> None:
        x0, y0, x1, y1 = rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1
        if layer == "image":
            self._img_q = rgb_qimage(self.doc.image)
        else:
            px = self._mask_px if layer == "mask" else self._sketch_px
            color = self.mask_color if layer == "mask" else self.sketch_color
            px[y0:y1, x0:x1] = self._overlay(self.doc.layer(layer)[y0:y1, x0:x1], color)
            if layer == "mask":
                self._outline = None
            else:  # the full scan only runs when the changed patch holds no stroke (erasing)
                self._sketch_empty = not (self.doc.sketch[y0:y1, x0:x1].any() or self.doc.sketch.any())
        self.update(self.image_to_widget_rect(QRectF(x0, y0, x1 - x0, y1 - y0)).toAlignedRect().adjusted(-2, -2, 2, 2))

    def set_colors(self, mask: QColor | None = None, sketch: QColor | None = None) -> None:
        if mask is not None:
            self.mask_color = mask
        if sketch is not None:
            self.sketch_color = sketch
        self._rebuild_caches()

    @Slot()
    def _on_shown_result(self) -> None:
        item = self.doc.shown_item()
        self._result_q = self._result_box = None
        if item is not None and item.mask.any():
            x0, y0, x1, y1 = item.box
            self._result_q = argb_qimage(item.image[y0:y1, x0:x1], item.mask[y0:y1, x0:x1])
            self._result_box = (x0, y0, x1, y1)
        self.update()

    @Slot()
    def _on_preview(self) -> None:
        """Scale the preview into its box and keep it only inside the hole."""
        self._preview_q = None
        p, box = self.doc.preview, self.doc.preview_box
        if p is not None:
            h, w = self.doc.mask.shape
            x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
            if x1 > x0 and y1 > y0:
                img = p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2)
                img = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
                big = cv2.resize(np.ascontiguousarray(img), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
                self._preview_q = argb_qimage(big, self.doc.mask[y0:y1, x0:x1])
                self._preview_box = (x0, y0, x1, y1)
        self.update()

    def _mask_outline(self) -> QPainterPath:
        if self._outline is None:
            path = QPainterPath()
            contours, _ = cv2.findContours(self.doc.mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            for c in contours:
                pts = c[:, 0, :]
                path.moveTo(float(pts[0, 0]), float(pts[0, 1]))
                for x, y in pts[1:]:
                    path.lineTo(float(x), float(y))
                path.closeSubpath()
            self._outline = path
        return self._outline

    # ----- coordinates ---------------------------------------------------------------------------------------
    def widget_to_image(self, p: QPointF) -> QPointF:
        return (p - self.offset) / self.zoom

    def image_to_widget(self, p: QPointF) -> QPointF:
        return p * self.zoom + self.offset

    def image_to_widget_rect(self, r: QRectF) -> QRectF:
        return QRectF(self.image_to_widget(r.topLeft()), r.size() * self.zoom)

    def fit(self) -> None:
        w, h = self.doc.size
        if w <= 1 or h <= 1 or self.width() <= 1:
            return
        self._fit_mode = True
        z = min((self.width() - 16) / w, (self.height() - 16) / h)
        self._set_zoom(max(MIN_ZOOM, z), QPointF((self.width() - w * z) / 2, (self.height() - h * z) / 2))

    def actual_size(self) -> None:
        self.zoom_at(1.0, QPointF(self.width() / 2, self.height() / 2))

    def zoom_at(self, zoom: float, anchor: QPointF) -> None:
        """Zoom keeping the image point under ``anchor`` (widget coordinates) still."""
        zoom, anchor = min(MAX_ZOOM, max(MIN_ZOOM, zoom)), QPointF(anchor)
        img_pt = self.widget_to_image(anchor)
        self._fit_mode = False
        self._set_zoom(zoom, anchor - img_pt * zoom)

    def _set_zoom(self, zoom: float, offset: QPointF) -> None:
        self.zoom, self.offset = zoom, offset
        self.zoom_changed.emit(zoom)
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fit_mode:
            self.fit()
        super().resizeEvent(event)

    # ----- painting ------------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(event.rect(), QColor(38, 40, 44))
        if self.doc.empty:
            p.setPen(QColor(150, 152, 158))
            p.drawText(self.rect(), Qt.AlignCenter, "Open an image (Ctrl+O) or drop one here")
            p.end()
            return
        p.save()
        p.translate(self.offset)
        p.scale(self.zoom, self.zoom)
        if self.zoom < 1:
            p.setRenderHint(QPainter.SmoothPixmapTransform)
        if self.show_original:
            p.drawImage(0, 0, self._orig_q)
        else:
            self._draw_document(p)
        p.restore()
        if self.compare and self._result_q is not None and not self.show_original:
            self._draw_split_line(p)
        self._draw_region(p)
        self._draw_cursor(p)
        if self.show_original:
            p.setPen(QColor(255, 255, 255))
            p.drawText(QRectF(10, 8, 300, 20), Qt.AlignLeft, "Original (release to return)")
        p.end()
        self.painted.emit(time.perf_counter())

    def _draw_document(self, p: QPainter) -> None:
        p.drawImage(0, 0, self._img_q)
        showing_fill = self._preview_q is not None or self._result_q is not None
        if self._result_q is not None:
            x0, y0 = self._result_box[:2]
            if self.compare:  # left of the divider: the image before the result
                split_img = self.widget_to_image(QPointF(self._split_x * self.width(), 0)).x()
                p.save()
                p.setClipRect(QRectF(split_img, -1e6, 2e6, 2e6))
                p.drawImage(x0, y0, self._result_q)
                p.restore()
            else:
                p.drawImage(x0, y0, self._result_q)
        elif self._preview_q is not None:
            p.drawImage(self._preview_box[0], self._preview_box[1], self._preview_q)
        if showing_fill:
            pen = QPen(QColor(255, 255, 255, 200), 1.5 / self.zoom, Qt.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            p.drawPath(self._mask_outline())
        else:
            p.setOpacity(self.mask_opacity)
            p.drawImage(0, 0, self._mask_q)
            p.setOpacity(1.0)
        if not self._sketch_empty:
            p.drawImage(0, 0, self._sketch_q)
        if self._rubber is not None:
            p.setOpacity(self.mask_opacity)
            p.fillRect(self._rubber, self.mask_color if not self._drag_erase else QColor(0, 0, 0, 160))
            p.setOpacity(1.0)

    def _draw_split_line(self, p: QPainter) -> None:
        x = self._split_x * self.width()
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.drawText(QRectF(x - 110, 8, 100, 20), Qt.AlignRight, "before")
        p.drawText(QRectF(x + 10, 8, 100, 20), Qt.AlignLeft, "result")

    def _region_widget_rect(self) -> QRectF | None:
        if not self.region_visible or self.doc.region is None:
            return None
        x0, y0, x1, y1 = self.doc.region
        return self.image_to_widget_rect(QRectF(x0, y0, x1 - x0, y1 - y0))

    def _draw_region(self, p: QPainter) -> None:
        r = self._region_widget_rect()
        if r is None:
            return
        p.setBrush(Qt.NoBrush)
        p.setPen(QPen(QColor(255, 210, 0), 2, Qt.DashLine))
        p.drawRect(r)
        p.fillRect(self._handle_rect(r), QColor(255, 210, 0))
        p.fillRect(self._size_rect(r), QColor(255, 210, 0))
        p.setPen(QColor(0, 0, 0))
        p.drawText(self._handle_rect(r), Qt.AlignCenter, "region")

    @staticmethod
    def _handle_rect(r: QRectF) -> QRectF:
        return QRectF(r.left(), r.top() - 18, 60, 18)

    @staticmethod
    def _size_rect(r: QRectF) -> QRectF:
        return QRectF(r.right() - 10, r.bottom() - 10, 12, 12)

    def _draw_cursor(self, p: QPainter) -> None:
        if self._mouse.x() < 0 or self.tool in ("rect", "region") or self._drag == "pan" or self._space:
            return
        d = self.brush_size * self.zoom
        p.setBrush(Qt.NoBrush)
        p.setPen(QPen(QColor(0, 0, 0, 180), 3))
        p.drawEllipse(self._mouse, d / 2, d / 2)
        p.setPen(QPen(QColor(255, 255, 255), 1))
        p.drawEllipse(self._mouse, d / 2, d / 2)

    # ----- input ---------------------------------------------------------------------------------------------
    def _update_cursor(self) -> None:
        if self._drag == "pan":
            self.setCursor(Qt.ClosedHandCursor)
        elif self._space:
            self.setCursor(Qt.OpenHandCursor)
        elif self.tool in ("rect", "region"):
            self.setCursor(Qt.CrossCursor)
        else:
            self.setCursor(Qt.BlankCursor)  # the brush outline is the cursor

    def set_tool(self, tool: str) -> None:
        assert tool in TOOLS, tool
        self.tool = tool
        self._update_cursor()
        self.update()

    def mousePressEvent(self, e: QMouseEvent) -> None:
        pos = e.position()
        self._press_widget = pos
        if self._drag is not None:
            return
        if e.button() == Qt.MiddleButton or (e.button() == Qt.LeftButton and self._space):
            self._drag = "pan"
        elif e.button() in (Qt.LeftButton, Qt.RightButton):
            region = self._region_widget_rect()
            if region is not None and e.button() == Qt.LeftButton and (
                    self._handle_rect(region).contains(pos) or self._size_rect(region).contains(pos)
                    or (self.tool == "region" and region.contains(pos))):
                self._drag = "region-size" if self._size_rect(region).contains(pos) else "region-move"
                self._press_region = self.doc.region
            elif self.tool == "region":
                return
            elif self.tool == "rect":
                self._drag, self._drag_erase = "rect", e.button() == Qt.RightButton
                self._rubber = QRectF(self.widget_to_image(pos), self.widget_to_image(pos))
            else:
                self._drag = "stroke"
                self._drag_erase = self.tool == "eraser" or e.button() == Qt.RightButton
                self._last_img = self.widget_to_image(pos)
                self.doc.begin_stroke("sketch" if self.tool == "sketch" else "mask")
                pt = (self._last_img.x(), self._last_img.y())
                self.doc.stroke_segment(pt, pt, self._diameter(), self._drag_erase)
        self._update_cursor()

    def _diameter(self) -> float:
        return max(1.0, self.brush_size / 4) if self.tool == "sketch" else self.brush_size

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        pos = e.position()
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
            self.doc.stroke_segment((a.x(), a.y()), (b.x(), b.y()), self._diameter(), self._drag_erase)
            self._last_img = img
        elif self._drag == "rect":
            self._rubber = QRectF(self._rubber.topLeft(), img)
            self.update()
        elif self._drag in ("region-move", "region-size"):
            self._drag_region(pos)
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

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        drag, self._drag = self._drag, None
        if drag in ("region-move", "region-size"):
            self.region_dragged.emit()
        elif drag == "stroke":
            what = "sketch" if self.tool == "sketch" else "mask"
            verb = "Erase" if self._drag_erase else ("Sketch" if what == "sketch" else "Paint")
            self.doc.end_stroke(f"{verb} {what} stroke")
        elif drag == "rect" and self._rubber is not None:
            r = self._rubber.normalized()
            self._rubber = None
            new = self.doc.mask.copy()
            x0, y0 = int(round(max(0, r.left()))), int(round(max(0, r.top())))
            x1, y1 = int(round(r.right())), int(round(r.bottom()))
            new[y0:max(y0, y1), x0:max(x0, x1)] = not self._drag_erase
            self.doc.set_layer("mask", new, "Rectangle erase" if self._drag_erase else "Rectangle mask")
            self.update()
        self._update_cursor()

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
