"""The model picker: models grouped by what the user has in front of them (photos, faces, digits, their own
models), each shown in the open list with its title and one plain sentence of what it does on a photo
(``ModelInfo.on_photo``). Group headings cannot be picked; the arrow keys skip them."""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from editor.fit import GROUPS
from engine.api import ModelInfo

NAME_ROLE = Qt.UserRole + 1  # the model's registry key (None on a heading)
SENTENCE_ROLE = Qt.UserRole + 2
HEADING_ROLE = Qt.UserRole + 3
POPUP_WIDTH = 440  # the open list's minimum width (wider when the picker is)


class PickerDelegate(QStyledItemDelegate):
    """Two lines per model (title, then the plain sentence in a dimmer, smaller font); headings in bold caps."""

    PAD = 6

    @staticmethod
    def small_font(font: QFont) -> QFont:
        small = QFont(font)
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.92))
        return small

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        fm = option.fontMetrics
        if index.data(HEADING_ROLE):
            return QSize(200, fm.height() + 2 * self.PAD)
        width = POPUP_WIDTH  # the narrowest the list is: wrap for it, so no line is ever cut off
        text_w = width - 3 * self.PAD - 28  # the frame and the scroll bar's room
        sentence = index.data(SENTENCE_ROLE) or ""
        h = QFontMetrics(self.small_font(option.font)).boundingRect(QRect(0, 0, text_w, 10_000), Qt.TextWordWrap,
                                                                    sentence).height()
        return QSize(width, fm.height() + h + 2 * self.PAD)

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        p.save()
        r = option.rect.adjusted(self.PAD + 4, self.PAD // 2, -self.PAD, -self.PAD // 2)
        if index.data(HEADING_ROLE):
            font = QFont(option.font)
            font.setBold(True)
            font.setCapitalization(QFont.AllUppercase)
            font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
            p.setFont(font)
            p.setPen(QColor(140, 170, 230))
            p.drawText(r, Qt.AlignLeft | Qt.AlignBottom, index.data(Qt.DisplayRole))
            p.restore()
            return
        if option.state & QStyle.State_Selected or option.state & QStyle.State_MouseOver:
            p.fillRect(option.rect, option.palette.highlight())
        title_font = QFont(option.font)
        title_font.setBold(True)
        p.setFont(title_font)
        p.setPen(option.palette.color(option.palette.ColorRole.HighlightedText if option.state & QStyle.State_Selected
                                      else option.palette.ColorRole.Text))
        fm_h = option.fontMetrics.height()
        p.drawText(QRect(r.left(), r.top(), r.width(), fm_h), Qt.AlignLeft | Qt.AlignVCenter,
                   index.data(Qt.DisplayRole))
        p.setFont(self.small_font(option.font))
        p.setPen(QColor(185, 188, 195))
        p.drawText(QRect(r.left(), r.top() + fm_h, r.width(), r.height() - fm_h),
                   Qt.AlignLeft | Qt.AlignTop | Qt.TextWordWrap, index.data(SENTENCE_ROLE) or "")
        p.restore()


class ModelPicker(QComboBox):
    picked = Signal(str)  # a model was chosen in the list

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = QStandardItemModel(self)
        self.setModel(self._model)
        self.setItemDelegate(PickerDelegate(self))
        self.view().setMinimumWidth(POPUP_WIDTH)
        self.view().setVerticalScrollMode(self.view().ScrollMode.ScrollPerPixel)
        self.setMaxVisibleItems(30)
        self.setToolTip("The model that fills the masked area, grouped by what it is made for")
        self.currentIndexChanged.connect(self._on_index)

    def set_models(self, models: list[ModelInfo]) -> None:
        """Rebuild the list: one heading per group that has models, in GROUPS order (others last)."""
        self.blockSignals(True)
        self._model.clear()
        known = [key for key, _ in GROUPS]
        groups = GROUPS + tuple((c, c.capitalize()) for c in dict.fromkeys(m.category for m in models)
                                if c not in known)
        for key, heading in groups:
            members = [m for m in models if m.category == key]
            if not members:
                continue
            head = QStandardItem(heading)
            head.setFlags(Qt.NoItemFlags)
            head.setData(True, HEADING_ROLE)
            self._model.appendRow(head)
            for m in members:
                title = m.title if m.weights_present else f"{m.title}  (weights missing)"
                item = QStandardItem(title)
                item.setData(m.name, NAME_ROLE)
                item.setData(m.on_photo or m.description, SENTENCE_ROLE)
                item.setToolTip(m.on_photo or m.description)
                self._model.appendRow(item)
        self.blockSignals(False)

    def names(self) -> list[str]:
        return [n for i in range(self.count()) if (n := self.itemData(i, NAME_ROLE)) is not None]

    def group_of(self, name: str) -> str | None:
        """The heading a model is listed under."""
        heading = None
        for i in range(self.count()):
            if self.itemData(i, HEADING_ROLE):
                heading = self.itemText(i)
            elif self.itemData(i, NAME_ROLE) == name:
                return heading
        return None

    def current_model(self) -> str | None:
        return self.currentData(NAME_ROLE)

    def show_model(self, name: str) -> None:
        """Show ``name`` as picked without emitting ``picked``."""
        self.blockSignals(True)
        self.setCurrentIndex(self.findData(name, NAME_ROLE))
        self.blockSignals(False)

    @Slot(int)
    def _on_index(self, index: int) -> None:
        name = self.itemData(index, NAME_ROLE) if index >= 0 else None
        if name is not None:
            self.picked.emit(name)
