"""The canvas: draws the document and turns mouse input into edits. It keeps only view settings (zoom, pan, tool,
colours) and render caches rebuilt from the document's signals; all edited state lives in ``Document``.

Input: left button paints with the current tool, right button erases with it; the middle button or
space + drag pans; the wheel zooms around the cursor; holding backslash or O shows the original image. A tablet
pen's pressure scales the brush (its events are handled here, not turned into mouse events). The lasso and
Select object tools write into the mask through ``editor.selection``.

Zoom is in logical pixels times the screen's device-pixel ratio: at 100 % (``actual_size``) one image pixel is one
device pixel, also on a HiDPI screen, and the image is drawn on the device-pixel grid without smoothing.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPaintEvent, QPen, QResizeEvent
from PySide6.QtWidgets import QWidget

from editor import layers
from editor.canvas_input import BOX_TOOLS, ORIGINAL_KEYS, TOOLS, CanvasInput  # noqa: F401 (re-exported)
from editor.document import Document, Rect
from editor.qimages import argb_qimage, overlay_lut, rgb_qimage
from editor.selection import Lasso, ObjectSelection, paint_lasso, paint_object

MIN_ZOOM, MAX_ZOOM = 0.02, 32.0


class Canvas(CanvasInput, QWidget):
    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int)  # image pixel under the cursor (-1, -1 when outside)
    painted = Signal(float)  # perf_counter at the end of each paint: latency measurements hook here
    region_dragged = Signal()  # the user moved or resized the region box

    def __init__(self, doc: Document, parent: QWidget | None = None,
                 objects: ObjectSelection | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.objects = objects if objects is not None else ObjectSelection(doc, self)
        self.lasso = Lasso(doc)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.setMinimumSize(320, 240)
        self.setCursor(Qt.BlankCursor)
        self.tool = "brush"
        self.brush_size = 40.0  # image pixels
        self.hardness = 1.0  # 1 = a hard disc; lower = a soft edge over the outer part of the radius
        self.pressure = 1.0  # the pen's, while a tablet stroke runs
        self.mask_color = QColor(255, 40, 90)
        self.mask_opacity = 0.5
        self.sketch_color = QColor(40, 200, 255)
        self.show_original = False  # held key
        self.compare = False  # split view: left of the divider the image before the shown result
        self.region_visible = False
        self.region_label = "region"  # drawn on the box's handle: "region" | "looking..." | "detected"
        self.zoom = 1.0
        self.offset = QPointF(0, 0)  # widget position of image pixel (0, 0)
        self._fit_mode = True
        self._space = False
        self._drag: str | None = None  # "pan" | "stroke" | "rect" | "region-move" | "region-size"
        self._drag_erase = False
        self._last_img: QPointF | None = None
        self._press_widget = QPointF()
        self._press_region: Rect | None = None
        self._press_img = QPointF()
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
        self.objects.changed.connect(self.update)
        self._on_image_replaced()

    # ----- caches --------------------------------------------------------------------------------------------
    @Slot()
    def _on_image_replaced(self) -> None:
        self._rebuild_caches()
        self.fit()

    def _rebuild_caches(self) -> None:
        self._img_q = rgb_qimage(self.doc.image)
        self._orig_q = rgb_qimage(self.doc.original)
        self._mask_lut, self._sketch_lut = overlay_lut(self.mask_color), overlay_lut(self.sketch_color, 2)
        self._mask_q, self._mask_px = self._overlay_image(self.doc.mask, self._mask_lut)
        self._sketch_q, self._sketch_px = self._overlay_image(self.doc.sketch, self._sketch_lut)
        self._sketch_empty = not self.doc.sketch.any()
        self._outline = None
        self._on_shown_result()
        self._on_preview()

    @staticmethod
    def _overlay(layer: np.ndarray, lut: np.ndarray) -> np.ndarray:
        """Premultiplied BGRA per pixel from the layer's level: the mask's grey levels show as partial colour."""
        return lut[layer.view(np.uint8)]

    def _overlay_image(self, layer: np.ndarray, lut: np.ndarray) -> tuple[QImage, np.ndarray]:
        """An overlay QImage plus a numpy view of its pixels: edits write straight into the image, so a brush
        dab costs only its own rectangle and the overlay is held once, not twice."""
        h, w = layer.shape
        q = QImage(w, h, QImage.Format_ARGB32_Premultiplied)
        px = np.frombuffer(q.bits(), np.uint8).reshape(h, q.bytesPerLine())[:, :4 * w].reshape(h, w, 4)
        px[...] = self._overlay(layer, lut)
        return q, px

    @Slot(str, QRect)
    def _on_layer_changed(self, layer: str, rect: QRect) -> None:
        x0, y0, x1, y1 = rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1
        if layer == "image":
            self._img_q = rgb_qimage(self.doc.image)
        else:
            px = self._mask_px if layer == "mask" else self._sketch_px
            lut = self._mask_lut if layer == "mask" else self._sketch_lut
            px[y0:y1, x0:x1] = self._overlay(self.doc.layer(layer)[y0:y1, x0:x1], lut)
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
                self._preview_q = argb_qimage(big, self.doc.mask[y0:y1, x0:x1], blend=True)
                self._preview_box = (x0, y0, x1, y1)
        self.update()

    def _mask_outline(self) -> QPainterPath:
        if self._outline is None:
            path = QPainterPath()
            edge = layers.outline_mask(self.doc.mask).astype(np.uint8)
            contours, _ = cv2.findContours(edge, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
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

    def dpr(self) -> float:
        """Device pixels per logical pixel of the screen the canvas is on (2.0 at 200 % display scaling)."""
        return self.devicePixelRatioF()

    def actual_size(self) -> None:
        """100 %: one image pixel per device pixel."""
        self.zoom_at(1.0 / self.dpr(), QPointF(self.width() / 2, self.height() / 2))

    @property
    def scale_percent(self) -> float:
        """The zoom as the user reads it: image pixels to device pixels, in percent."""
        return self.zoom * self.dpr() * 100

    def zoom_at(self, zoom: float, anchor: QPointF) -> None:
        """Zoom keeping the image point under ``anchor`` (widget coordinates) still."""
        zoom, anchor = min(MAX_ZOOM, max(MIN_ZOOM, zoom)), QPointF(anchor)
        img_pt = self.widget_to_image(anchor)
        self._fit_mode = False
        self._set_zoom(zoom, anchor - img_pt * zoom)

    def _set_zoom(self, zoom: float, offset: QPointF) -> None:
        self.zoom, self.offset = zoom, offset
        self.zoom_changed.emit(zoom * self.dpr())
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
        dpr = self.dpr()  # the image's origin on the device-pixel grid: at 100 % each pixel lands on one
        p.translate(QPointF(round(self.offset.x() * dpr) / dpr, round(self.offset.y() * dpr) / dpr))
        p.scale(self.zoom, self.zoom)
        if self.zoom * dpr < 1:
            p.setRenderHint(QPainter.SmoothPixmapTransform)
        if self.show_original:
            p.drawImage(0, 0, self._orig_q)
        else:
            self._draw_document(p)
        p.restore()
        if self.compare and self._result_q is not None and not self.show_original:
            self._draw_split_line(p)
        self._draw_region(p)
        paint_lasso(p, self, self.lasso)
        paint_object(p, self, self.objects)
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
        p.drawText(self._handle_rect(r), Qt.AlignCenter, self.region_label)

    @staticmethod
    def _handle_rect(r: QRectF) -> QRectF:
        return QRectF(r.left(), r.top() - 18, 76, 18)

    @staticmethod
    def _size_rect(r: QRectF) -> QRectF:
        return QRectF(r.right() - 10, r.bottom() - 10, 12, 12)

    def _draw_cursor(self, p: QPainter) -> None:
        if self._mouse.x() < 0 or self.tool in BOX_TOOLS or self._drag == "pan" or self._space:
            return
        d = self._diameter() * self.zoom
        p.setBrush(Qt.NoBrush)
        p.setPen(QPen(QColor(0, 0, 0, 180), 3))
        p.drawEllipse(self._mouse, d / 2, d / 2)
        p.setPen(QPen(QColor(255, 255, 255), 1))
        p.drawEllipse(self._mouse, d / 2, d / 2)

