"""The edited state: image, mask, sketch, results and the undo stack. Qt signals, no widgets.

Every change to a layer goes through a QUndoCommand (editor/commands.py) that stores only the changed rectangle
(before and after), so a brush stroke on a 12-megapixel photo costs kilobytes of undo memory, not megabytes.

The mask is grey-level (uint8 alpha: 0 keep .. 255 fill; a soft brush, a feather or a soft seam make the levels
between), and a result is blended into the photo by it (``engine.runner.composite``). The sketch is bool.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRect, Signal
from PySide6.QtGui import QUndoStack

from editor import layers
from editor.commands import AcceptMark, BorderCommand, ExpandCommand, PatchCommand
from engine.api import Request, Result
from engine.crop import mask_bbox
from engine.metadata import png_metadata
from engine.project import Project, SavedResult

Rect = tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive ends, image pixels

LAYERS = ("image", "mask", "sketch")


@dataclass
class HistoryItem:
    """One finished fill, with the mask it was made for, so it stays meaningful after the user edits the mask or
    accepts another result. The image the job ran on equals the result outside the mask (the runner guarantees
    it), so only its patch under the mask's bounding box is kept: one full-size image per result, not two."""

    result: Result  # what the job made and the settings it used (exports describe it: ``metadata``)
    mask: np.ndarray
    base_patch: np.ndarray  # the job's input image inside ``box``
    box: Rect  # bounding box of ``mask``
    accepted: bool = False

    @classmethod
    def from_result(cls, result: Result, request: Request) -> "HistoryItem":
        x0, y0, x1, y1 = box = mask_bbox(request.mask)
        if not result.prompt and request.prompt:  # a runner that does not fill Result.prompt in yet
            result = dataclasses.replace(result, prompt=request.prompt)
        return cls(result=result, mask=request.mask, base_patch=request.image[y0:y1, x0:x1].copy(), box=box)

    # the result's fields, read where the history and the canvas show them
    image = property(lambda self: self.result.image)  # full size
    model = property(lambda self: self.result.model)
    seed = property(lambda self: self.result.seed)
    params = property(lambda self: self.result.params)
    attributes = property(lambda self: self.result.attributes)
    chosen = property(lambda self: self.result.chosen)  # settings the model picked itself
    timings = property(lambda self: self.result.timings)
    prompt = property(lambda self: self.result.prompt)

    def pad(self, pads: layers.Pads, fill: str) -> None:
        """Follow an Expand canvas: the result grows like the image, its mask gains an empty border."""
        self.result = dataclasses.replace(self.result, image=layers.pad(self.result.image, pads, fill))
        self.mask = layers.pad(self.mask, pads)
        x0, y0, x1, y1 = self.box
        self.box = (x0 + pads[0], y0 + pads[1], x1 + pads[0], y1 + pads[1])

    def unpad(self, pads: layers.Pads) -> bool:
        """Undo ``pad``; False (and nothing changed) when the result lies in the border only."""
        mask = layers.unpad(self.mask, pads)
        if not mask.any():
            return False
        x0, y0, x1, y1 = mask_bbox(mask)
        ox, oy = self.box[0] - pads[0], self.box[1] - pads[1]  # the old box in the cropped image
        self.base_patch = self.base_patch[y0 - oy:y1 - oy, x0 - ox:x1 - ox].copy()
        self.result = dataclasses.replace(self.result, image=layers.unpad(self.result.image, pads))
        self.mask, self.box = mask, (x0, y0, x1, y1)
        return True

    def base(self) -> np.ndarray:
        """The image the job ran on."""
        x0, y0, x1, y1 = self.box
        out = self.image.copy()
        out[y0:y1, x0:x1] = self.base_patch
        return out

    def metadata(self, source: str | None = None) -> dict[str, str]:
        """Text chunks written into exported PNGs (the CLI's format: ``engine.metadata``)."""
        return png_metadata(self.result, source)


def clip_rect(rect: Rect, shape: tuple[int, ...]) -> Rect | None:
    h, w = shape[:2]
    x0, y0, x1, y1 = max(0, rect[0]), max(0, rect[1]), min(w, rect[2]), min(h, rect[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def diff_rect(a: np.ndarray, b: np.ndarray) -> Rect | None:
    """Bounding box of the pixels that differ between two same-shape arrays."""
    changed = a != b
    if changed.ndim == 3:
        changed = changed.any(axis=2)
    return mask_bbox(changed) if changed.any() else None


class Document(QObject):
    """Signals carry the changed rectangle as a QRect in image pixels so views repaint only that part."""

    image_replaced = Signal()  # a new image, or its size changed (Expand canvas): views rebuild everything
    layer_changed = Signal(str, QRect)  # layer name, changed rect
    results_changed = Signal()
    shown_result_changed = Signal()
    preview_changed = Signal()
    region_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.path: Path | None = None
        self.alpha: np.ndarray | None = None
        self.original = np.zeros((1, 1, 3), np.uint8)  # as opened; "hold to see the original" shows this
        self.image = self.original.copy()
        self.mask = np.zeros((1, 1), np.uint8)
        self.sketch = np.zeros((1, 1), bool)
        self.border: layers.Pads | None = None  # what an Expand canvas added and no accepted fill covered yet
        self.results: list[HistoryItem] = []
        self.shown: int | None = None  # index into results drawn on the canvas
        self.preview: np.ndarray | None = None  # live job estimate, full-size box crop
        self.preview_box: Rect | None = None
        self.region: Rect | None = None  # the box of a uses_region model
        self._stroke: tuple[str, np.ndarray, Rect | None] | None = None

    # ----- loading ------------------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray, path: Path | None = None, alpha: np.ndarray | None = None) -> None:
        h, w = rgb.shape[:2]
        self.path, self.alpha = path, alpha
        self.original = np.ascontiguousarray(rgb)
        self.image = self.original.copy()
        self.mask = np.zeros((h, w), np.uint8)
        self.sketch = np.zeros((h, w), bool)
        self.results, self.shown, self.region, self.border = [], None, None, None
        self._stroke = None
        self.preview = self.preview_box = None
        self.undo_stack.clear()
        self.undo_stack.setClean()
        self.image_replaced.emit()
        self.results_changed.emit()

    @property
    def empty(self) -> bool:
        """No image opened yet (the placeholder is 1 x 1)."""
        return self.image.shape[:2] == (1, 1) and self.path is None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def layer(self, name: str) -> np.ndarray:
        return getattr(self, name)

    # ----- edits (always through the undo stack) ------------------------------------------------------------
    def _write(self, layer: str, rect: Rect, pixels: np.ndarray) -> None:
        x0, y0, x1, y1 = rect
        self.layer(layer)[y0:y1, x0:x1] = pixels
        if layer == "mask":  # a shown result belongs to the old mask; a live preview follows the new one
            self.show_result(None)
        self.layer_changed.emit(layer, QRect(x0, y0, x1 - x0, y1 - y0))

    def commit(self, layer: str, before: np.ndarray, after: np.ndarray, text: str) -> bool:
        """Push the difference between two full-layer arrays as one undo step; False when nothing changed."""
        rect = diff_rect(before, after)
        if rect is None:
            return False
        x0, y0, x1, y1 = rect
        self.undo_stack.push(PatchCommand(self, layer, rect, before[y0:y1, x0:x1], after[y0:y1, x0:x1], text))
        return True

    def commit_patch(self, layer: str, rect: Rect, before: np.ndarray, text: str) -> bool:
        """Record an edit already drawn into ``layer`` inside ``rect`` (live brush strokes), given the old pixels."""
        x0, y0, x1, y1 = rect
        after = self.layer(layer)[y0:y1, x0:x1]
        if np.array_equal(before, after):
            return False
        self.undo_stack.push(PatchCommand(self, layer, rect, before, after, text))
        return True

    # Live strokes: the canvas draws segments straight into the layer (fast feedback), and the whole stroke
    # becomes one undo step on release, holding only the rectangle it touched.
    def begin_stroke(self, layer: str) -> None:
        self._stroke = (layer, self.layer(layer).copy(), None)

    def stroke_segment(self, p0: tuple[float, float], p1: tuple[float, float], diameter: float,
                       erase: bool = False, hardness: float = 1.0) -> None:
        """One segment of the live stroke: a round brush of ``diameter`` with a soft edge below hardness 1
        (``layers.dab_alpha``); positions are sub-pixel image coordinates."""
        layer, snapshot, rect = self._stroke
        r = int(np.ceil(max(diameter, 1.5) / 2)) + 1
        seg = clip_rect((int(min(p0[0], p1[0])) - r, int(min(p0[1], p1[1])) - r,
                         int(max(p0[0], p1[0])) + r + 1, int(max(p0[1], p1[1])) + r + 1), self.mask.shape)
        if seg is None:
            return
        x0, y0, x1, y1 = seg
        cover = layers.dab_alpha(seg, p0, p1, diameter, hardness)
        layers.apply_dab(self.layer(layer)[y0:y1, x0:x1], cover, erase)
        if layer == "mask":
            self.show_result(None)
        rect = seg if rect is None else (min(rect[0], x0), min(rect[1], y0), max(rect[2], x1), max(rect[3], y1))
        self._stroke = (layer, snapshot, rect)
        self.layer_changed.emit(layer, QRect(x0, y0, x1 - x0, y1 - y0))

    def end_stroke(self, text: str) -> bool:
        layer, snapshot, rect = self._stroke
        self._stroke = None
        if rect is None:
            return False
        x0, y0, x1, y1 = rect
        return self.commit_patch(layer, rect, snapshot[y0:y1, x0:x1], text)

    @property
    def stroking(self) -> bool:
        return self._stroke is not None

    def set_layer(self, layer: str, new: np.ndarray, text: str) -> bool:
        return self.commit(layer, self.layer(layer).copy(), new, text)

    def invert_mask(self) -> bool:
        return self.set_layer("mask", 255 - self.mask, "Invert mask")

    def clear_mask(self) -> bool:
        return self.set_layer("mask", np.zeros_like(self.mask), "Clear mask")

    def clear_sketch(self) -> bool:
        return self.set_layer("sketch", np.zeros_like(self.sketch), "Clear sketch")

    def grow_mask(self, px: int) -> bool:
        """Dilate (px > 0) or erode (px < 0) with a round kernel."""
        return self.set_layer("mask", layers.grow(self.mask, px), f"{'Grow' if px > 0 else 'Shrink'} mask {abs(px)} px")

    def feather_mask(self, radius: int) -> bool:
        """A real soft edge across the outline (``layers.feather``): the fill fades into the photo there."""
        return self.set_layer("mask", layers.feather(self.mask, radius), f"Feather mask {radius} px")

    def add_to_mask(self, selection: np.ndarray, text: str, subtract: bool = False) -> bool:
        """A selection (bool or alpha) added to the mask, or taken out of it, as one undo step."""
        alpha = layers.as_alpha(selection)
        new = np.minimum(self.mask, 255 - alpha) if subtract else np.maximum(self.mask, alpha)
        return self.set_layer("mask", new, text)

    def expand_canvas(self, pads: layers.Pads, fill: str = "edge") -> bool:
        """Image > Expand canvas: grow the image by (left, top, right, bottom) pixels, new pixels from ``fill``
        ("edge" repeats the outermost pixels, "grey" is mid-grey); the new border becomes the mask. One undo step."""
        pads = tuple(max(0, int(v)) for v in pads)
        if not any(pads) or self.empty:
            return False
        self._stroke = None
        self.undo_stack.push(ExpandCommand(self, pads, fill))
        return True

    def _geometry_changed(self) -> None:
        """The size changed (Expand canvas and its undo): views rebuild; a shown result follows its image."""
        self.preview = self.preview_box = None
        if self.shown is not None and self.shown >= len(self.results):
            self.shown = None
        if self.region is not None:
            self.region = clip_rect(self.region, self.image.shape)
        self.image_replaced.emit()
        self.results_changed.emit()
        self.shown_result_changed.emit()

    def border_pending(self) -> np.ndarray | None:
        """The masked part of the border an Expand canvas added and no fill covered yet (None: there is none)."""
        if self.border is None:
            return None
        hole = layers.border_mask(self.mask.shape, self.border) & (self.mask > 0)
        return hole if hole.any() else None

    def set_sketch_from(self, strokes: np.ndarray) -> bool:
        """Replace the sketch with ``strokes``, limited to the mask when one is painted."""
        if self.mask.any():
            strokes = strokes & (self.mask > 0)
        return self.set_layer("sketch", strokes.astype(bool), "Sketch from edges")

    # ----- requests and results -----------------------------------------------------------------------------
    def request(self, seed: int, params: dict[str, Any], attributes: dict[str, float], prompt: str = "",
                use_region: bool = False) -> Request:
        """Owned copies, so the worker thread never reads arrays the GUI is painting into."""
        return Request(image=self.image.copy(), mask=self.mask.copy(),
                       sketch=self.sketch.copy() if self.sketch.any() else None,
                       attributes=dict(attributes), seed=int(seed), params=dict(params),
                       region=self.region if use_region else None, prompt=prompt)

    def add_result(self, item: HistoryItem, replace: int | None = None) -> int:
        """Append ``item`` (or put it in place of result ``replace``) and show it."""
        if replace is not None and 0 <= replace < len(self.results):
            self.results[replace] = item
            index = replace
        else:
            self.results.append(item)
            index = len(self.results) - 1
        self.results_changed.emit()
        if self.shown == index:
            self.shown_result_changed.emit()  # same index, new pixels
        self.show_result(index)
        return index

    def discard_result(self, index: int) -> None:
        del self.results[index]
        if self.shown is not None:
            self.shown = None if self.shown == index else self.shown - (self.shown > index)
        self.results_changed.emit()
        self.shown_result_changed.emit()

    def show_result(self, index: int | None) -> None:
        if index != self.shown:
            self.shown = index
            self.shown_result_changed.emit()

    def shown_item(self) -> HistoryItem | None:
        return None if self.shown is None else self.results[self.shown]

    def accept_result(self, index: int) -> bool:
        """Apply the result inside its own mask and clear that part of the mask, as one undo step."""
        item = self.results[index]
        covered = item.mask > 0  # item.image holds the fill already blended by the mask's alpha
        new_image = np.where(covered[..., None], item.image, self.image)
        self.undo_stack.beginMacro(f"Accept fill ({item.model}, seed {item.seed})")
        changed = self.set_layer("image", new_image, "Apply fill")
        self.set_layer("mask", np.where(covered, 0, self.mask).astype(np.uint8), "Clear filled mask")  # a newer
        # mask elsewhere stays
        if self.border is not None and (layers.border_mask(covered.shape, self.border) & covered).any():
            self.undo_stack.push(BorderCommand(self, None))
        self.undo_stack.push(AcceptMark(self, item))
        self.undo_stack.endMacro()
        self.show_result(None)
        return changed

    def last_accepted(self) -> HistoryItem | None:
        return next((r for r in reversed(self.results) if r.accepted), None)

    def composed(self) -> np.ndarray:
        """What the canvas shows without the overlays: the image with the shown result applied."""
        item = self.shown_item()
        if item is None:
            return self.image
        return np.where(item.mask[..., None] > 0, item.image, self.image)

    # ----- project files ------------------------------------------------------------------------------------
    def to_project(self) -> Project:
        """Everything to keep, as owned copies (an autosave writes them on another thread)."""
        return Project(image=self.image.copy(), original=self.original.copy(), mask=self.mask.copy(),
                       sketch=self.sketch.copy(), alpha=None if self.alpha is None else self.alpha.copy(),
                       source=str(self.path) if self.path else None, border=self.border,
                       results=[SavedResult(r.result, r.mask, r.base_patch, r.box, r.accepted) for r in self.results],
                       shown=self.shown)

    def load_project(self, project: Project) -> None:
        """Replace everything with a project's content; the undo stack starts empty."""
        self.set_image(project.original, Path(project.source) if project.source else None, project.alpha)
        self.image = project.image.copy()
        self.mask = layers.as_alpha(project.mask)
        self.sketch = project.sketch.astype(bool)
        self.border = project.border
        self.results = [HistoryItem(r.result, layers.as_alpha(r.mask), r.base_patch, r.box, r.accepted)
                        for r in project.results]
        self.shown = project.shown
        self._geometry_changed()

    # ----- live preview and region (transient, not undoable) ------------------------------------------------
    def set_preview(self, image: np.ndarray | None, box: Rect | None) -> None:
        self.preview, self.preview_box = image, box
        self.preview_changed.emit()

    def clear_preview(self) -> None:
        if self.preview is not None:
            self.set_preview(None, None)

    def set_region(self, region: Rect | None) -> None:
        if region is not None:
            region = clip_rect(region, self.image.shape) or None
        if region != self.region:
            self.region = region
            self.region_changed.emit()

    def default_region(self, side: int) -> Rect:
        """A square of at least ``side`` pixels centred on the mask, with room for the whole hole plus context
        (or centred on the image when the mask is empty)."""
        h, w = self.mask.shape
        if self.mask.any():
            x0, y0, x1, y1 = mask_bbox(self.mask)
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            side = max(side, int(1.5 * max(x1 - x0, y1 - y0)))
        else:
            cx, cy = w // 2, h // 2
        side = min(side, w, h)
        x = min(max(0, cx - side // 2), w - side)
        y = min(max(0, cy - side // 2), h - side)
        return (x, y, x + side, y + side)
