"""Tool icons drawn with QPainter at run time: no image files to ship, crisp at any device pixel ratio."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

SIZE = 64
INK = QColor(225, 228, 232)
ACCENT = QColor(255, 70, 110)
SKETCH = QColor(40, 200, 255)


def _icon(draw) -> QIcon:
    pm = QPixmap(SIZE, SIZE)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.scale(SIZE / 32, SIZE / 32)
    draw(p)
    p.end()
    return QIcon(pm)


def _brush(p: QPainter) -> None:
    p.setPen(Qt.NoPen)
    p.setBrush(ACCENT)
    p.drawEllipse(QPointF(13, 19), 8, 8)
    p.setPen(QPen(INK, 3, Qt.SolidLine, Qt.RoundCap))
    p.drawLine(QPointF(18, 14), QPointF(28, 4))


def _eraser(p: QPainter) -> None:
    p.setPen(QPen(INK, 2))
    p.setBrush(QColor(120, 124, 130))
    p.drawPolygon(QPolygonF([QPointF(4, 20), QPointF(16, 8), QPointF(28, 20), QPointF(20, 28), QPointF(12, 28)]))
    p.setBrush(ACCENT)
    p.drawPolygon(QPolygonF([QPointF(4, 20), QPointF(10, 14), QPointF(22, 26), QPointF(20, 28), QPointF(12, 28)]))


def _rect(p: QPainter) -> None:
    p.setBrush(QColor(ACCENT.red(), ACCENT.green(), ACCENT.blue(), 140))
    p.setPen(QPen(INK, 2, Qt.DashLine))
    p.drawRect(QRectF(5, 7, 22, 18))


def _sketch(p: QPainter) -> None:
    path = QPainterPath(QPointF(4, 24))
    path.cubicTo(QPointF(10, 4), QPointF(18, 30), QPointF(28, 8))
    p.setPen(QPen(SKETCH, 3, Qt.SolidLine, Qt.RoundCap))
    p.drawPath(path)


def _region(p: QPainter) -> None:
    p.setPen(QPen(QColor(255, 210, 0), 2, Qt.DashLine))
    p.setBrush(Qt.NoBrush)
    p.drawRect(QRectF(5, 8, 20, 20))
    p.fillRect(QRectF(5, 3, 11, 5), QColor(255, 210, 0))
    p.fillRect(QRectF(23, 26, 5, 5), QColor(255, 210, 0))


def _lasso(p: QPainter) -> None:
    path = QPainterPath(QPointF(16, 26))
    path.cubicTo(QPointF(0, 24), QPointF(2, 4), QPointF(16, 5))
    path.cubicTo(QPointF(30, 6), QPointF(31, 22), QPointF(18, 22))
    p.setBrush(QColor(ACCENT.red(), ACCENT.green(), ACCENT.blue(), 110))
    p.setPen(QPen(INK, 2, Qt.DashLine))
    p.drawPath(path)
    p.setPen(QPen(INK, 2.5, Qt.SolidLine, Qt.RoundCap))
    p.drawLine(QPointF(16, 26), QPointF(12, 30))


def _polygon(p: QPainter) -> None:
    pts = [QPointF(5, 24), QPointF(9, 6), QPointF(26, 10), QPointF(22, 27)]
    p.setBrush(QColor(ACCENT.red(), ACCENT.green(), ACCENT.blue(), 110))
    p.setPen(QPen(INK, 2))
    p.drawPolygon(QPolygonF(pts))
    p.setBrush(INK)
    for q in pts:
        p.drawEllipse(q, 2.2, 2.2)


def _object(p: QPainter) -> None:
    p.setPen(QPen(QColor(120, 220, 255), 2, Qt.DashLine))
    p.setBrush(Qt.NoBrush)
    p.drawRect(QRectF(4, 4, 24, 24))
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(ACCENT.red(), ACCENT.green(), ACCENT.blue(), 170))
    p.drawEllipse(QPointF(16, 18), 7, 8)
    p.drawEllipse(QPointF(16, 9), 4, 4)
    p.setBrush(QColor(60, 220, 90))
    p.drawEllipse(QPointF(23, 23), 3, 3)


def _fill(p: QPainter) -> None:
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(90, 200, 120))
    p.drawPolygon(QPolygonF([QPointF(8, 5), QPointF(26, 16), QPointF(8, 27)]))


def _cancel(p: QPainter) -> None:
    p.setPen(QPen(QColor(235, 90, 90), 4, Qt.SolidLine, Qt.RoundCap))
    p.drawLine(QPointF(8, 8), QPointF(24, 24))
    p.drawLine(QPointF(24, 8), QPointF(8, 24))


def _variation(p: QPainter) -> None:
    p.setPen(QPen(INK, 2))
    p.setBrush(Qt.NoBrush)
    p.drawRoundedRect(QRectF(5, 5, 22, 22), 4, 4)
    p.setBrush(INK)
    for x, y in ((11, 11), (21, 21), (16, 16), (21, 11), (11, 21)):
        p.drawEllipse(QPointF(x, y), 1.8, 1.8)


def _arrow(p: QPainter, flip: bool) -> None:
    if flip:
        p.translate(32, 0)
        p.scale(-1, 1)
    path = QPainterPath(QPointF(26, 25))
    path.cubicTo(QPointF(27, 12), QPointF(18, 9), QPointF(9, 13))
    p.setPen(QPen(INK, 3, Qt.SolidLine, Qt.RoundCap))
    p.setBrush(Qt.NoBrush)
    p.drawPath(path)
    p.setPen(Qt.NoPen)
    p.setBrush(INK)
    p.drawPolygon(QPolygonF([QPointF(4, 14), QPointF(12, 6), QPointF(13, 19)]))


def _learn(p: QPainter) -> None:  # a falling loss curve on its axes, as the progress panel draws it
    p.setPen(QPen(INK, 2, Qt.SolidLine, Qt.RoundCap))
    p.drawLine(QPointF(5, 4), QPointF(5, 27))
    p.drawLine(QPointF(5, 27), QPointF(28, 27))
    path = QPainterPath(QPointF(8, 6))
    path.cubicTo(QPointF(11, 20), QPointF(16, 22), QPointF(27, 22))
    p.setPen(QPen(QColor(90, 200, 120), 3, Qt.SolidLine, Qt.RoundCap))
    p.drawPath(path)


_DRAW = {"undo": lambda p: _arrow(p, False), "redo": lambda p: _arrow(p, True), "brush": _brush,
         "eraser": _eraser, "rect": _rect, "lasso": _lasso, "polygon": _polygon, "object": _object,
         "sketch": _sketch, "region": _region, "fill": _fill, "cancel": _cancel, "variation": _variation,
         "learn": _learn}


def icon(name: str) -> QIcon:
    return _icon(_DRAW[name])
