"""The bar on top: file and undo actions, brush size and hardness, mask opacity, the mask and sketch colours, the
job actions. Size, hardness, opacity and colours are settings of the canvas's tools (not document state), so they
are set on it here."""
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
        self.addWidget(QLabel(" Hardness "))
        self.hardness = QSpinBox()
        self.hardness.setRange(0, 100)
        self.hardness.setSingleStep(10)
        self.hardness.setSuffix(" %")
        self.hardness.setValue(int(round(canvas.hardness * 100)))
        self.hardness.setToolTip("Brush edge: 100 % hard; lower paints a soft edge, so the fill fades into the "
                                 "photo there (Shift+[ softer, Shift+] harder)")
        self.addWidget(self.hardness)
        self.addWidget(QLabel(" Opacity "))
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(5, 100)
        self.opacity.setValue(int(canvas.mask_opacity * 100))
        self.opacity.setFixedWidth(72)
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
        self.hardness.valueChanged.connect(self._on_hardness)
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

    @Slot()
    def softer(self) -> None:
        self.hardness.setValue(max(0, self.hardness.value() - 25))

    @Slot()
    def harder(self) -> None:
        self.hardness.setValue(min(100, self.hardness.value() + 25))

    @Slot(int)
    def _on_hardness(self, v: int) -> None:
        self.canvas.hardness = v / 100
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
                        f"padding: 2px 6px; margin: 0 2px; }}")

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
