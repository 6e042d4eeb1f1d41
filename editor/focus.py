"""Enter or Esc in a field (the brush size, a parameter, the seed, the prompt) hands the keyboard back to the
canvas, so the next tool shortcut reaches the canvas instead of being typed into the field.

The filter sits on the fields themselves (``watch``), not on the application: an application-wide Python filter
would see every event of every object, including objects half-way through their destruction."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QAbstractSpinBox, QLineEdit, QWidget

KEYS = (Qt.Key_Return, Qt.Key_Enter, Qt.Key_Escape)


class ReturnFocus(QObject):
    def __init__(self, canvas: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self._watched: set[int] = set()

    def watch(self, root: QWidget) -> None:
        """Filter the text and number fields under ``root`` (again after a panel rebuilt its fields)."""
        for field in root.findChildren(QLineEdit) + root.findChildren(QAbstractSpinBox):
            if id(field) not in self._watched:
                field.installEventFilter(self)
                self._watched.add(id(field))
                field.destroyed.connect(self._forget)

    @Slot(QObject)
    def _forget(self, obj: QObject) -> None:
        self._watched.discard(id(obj))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.KeyPress and event.key() in KEYS:
            QTimer.singleShot(0, self.canvas, self._to_canvas)  # after the field took its value
        return False

    def _to_canvas(self) -> None:
        self.canvas.setFocus(Qt.ShortcutFocusReason)
