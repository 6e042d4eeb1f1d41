"""Simulated-input helpers shared by the editor tests."""
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest


def canvas_point(canvas, x: float, y: float) -> QPoint:
    """Widget position of image pixel (x, y)."""
    p = canvas.image_to_widget(QPointF(x, y))
    return QPoint(round(p.x()), round(p.y()))


def drag(canvas, points, button=Qt.LeftButton, modifier=Qt.NoModifier) -> None:
    """Press at the first image point, move through the others, release at the last (simulated mouse)."""
    pts = [canvas_point(canvas, x, y) for x, y in points]
    QTest.mouseMove(canvas, pts[0])
    QTest.mousePress(canvas, button, modifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(canvas, p)
    QTest.mouseRelease(canvas, button, modifier, pts[-1])


def paint_mask(window, box=(200, 200, 300, 260), size=30) -> None:
    """Brush strokes covering roughly ``box`` (image pixels)."""
    window.act.options.size_spin.setValue(size)
    window.act.tools["brush"].trigger()
    x0, y0, x1, y1 = box
    for y in range(y0, y1 + 1, size // 2):
        drag(window.canvas, [(x, y) for x in np.linspace(x0, x1, 6)])


def select_model(window, name: str) -> None:
    window.model_panel.select(name)
    assert window.model_panel.current_model() == name


def set_param(window, name: str, value) -> None:
    window.model_panel.fields[name].editor.setValue(value)


def screenshot(window, artifacts, name: str) -> Path:
    path = artifacts / f"editor_{name}.png"
    window.grab().save(str(path))
    return path
