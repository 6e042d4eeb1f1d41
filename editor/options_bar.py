"""The bar on top: file and undo actions, brush size, mask opacity, the mask and sketch colours, the job actions.
Size, opacity and colours are view settings of the canvas (not document state), so they are set on it here."""
from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QColorDialog, QLabel, QSlider, QSpinBox, QToolBar, QToolButton, QWidget

from editor.canvas import Canvas


class OptionsBar(QToolBar):
    def __init__(self, canvas: Canvas, leading: list[QAction], trailing: list[QAction],
                 parent: QWidget | None = None) -> None:
        super().__init__("Options", parent)
        self.canvas = canvas
        self.setObjectName("optionsBar")
        self.setMovable(False)
        for a in leading:
            a.setPriority(QAction.LowPriority)  # icon only beside text: the job actions must fit at 1024 px
            self.addAction(a)
        self.addSeparator()
        self.addWidget(QLabel(" Size "))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 500)
        self.size_spin.setSuffix(" px")
        self.size_spin.setValue(int(canvas.brush_size))
        self.size_spin.setToolTip("Brush size in image pixels ([ and ])")
        self.addWidget(self.size_spin)
        self.addWidget(QLabel("  Mask opacity "))
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(5, 100)
        self.opacity.setValue(int(canvas.mask_opacity * 100))
        self.opacity.setFixedWidth(110)
        self.opacity.setToolTip("How opaque the mask overlay is drawn")
        self.addWidget(self.opacity)
        self.mask_color_btn = self._color_button("Mask colour", canvas.mask_color, self._pick_mask_color)
        self.sketch_color_btn = self._color_button("Sketch colour", canvas.sketch_color, self._pick_sketch_color)
        self.addWidget(self.mask_color_btn)
        self.addWidget(self.sketch_color_btn)
        self.addSeparator()
        for a in trailing:
            self.addAction(a)
        self.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.size_spin.valueChanged.connect(self._on_size)
        self.opacity.valueChanged.connect(self._on_opacity)

    @Slot()
    def smaller(self) -> None:
        self.size_spin.setValue(max(1, int(self.size_spin.value() / 1.25)))

    @Slot()
    def larger(self) -> None:
        self.size_spin.setValue(max(self.size_spin.value() + 1, int(self.size_spin.value() * 1.25)))

    @Slot(int)
    def _on_size(self, v: int) -> None:
        self.canvas.brush_size = float(v)
        self.canvas.update()

    @Slot(int)
    def _on_opacity(self, v: int) -> None:
        self.canvas.mask_opacity = v / 100
        self.canvas.update()

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
