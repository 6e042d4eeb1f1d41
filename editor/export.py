"""What the editor exports, built from the document; all writes go through ``engine.imageio`` (atomic)."""
from __future__ import annotations

from pathlib import Path

from editor.document import Document, HistoryItem
from engine import imageio
from engine.api import InpaintError
from engine.metadata import png_metadata

IMAGE_FILTER = "PNG image (*.png);;JPEG image (*.jpg *.jpeg);;WebP image (*.webp)"
EXPORT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def provenance(doc: Document) -> HistoryItem | None:
    """The fill an export describes: the one on the canvas, else the last accepted one."""
    return doc.shown_item() or doc.last_accepted()


def source(doc: Document) -> str | None:
    """The opened file's name, which exports record as their source."""
    return doc.path.name if doc.path is not None else None


def is_original(doc: Document, path: Path) -> bool:
    return doc.path is not None and Path(path).resolve() == Path(doc.path).resolve()


def check_suffix(path: Path) -> None:
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise InpaintError(f"{path.name}: export as .png, .jpg or .webp")


def export_image(doc: Document, path: Path) -> Path:
    """What the canvas shows (the shown result applied); a PNG carries model, seed and parameters as text
    (``engine.metadata``, as the CLI writes them)."""
    check_suffix(path)
    item = provenance(doc)
    meta = png_metadata(item.result if item is not None else None, source(doc))
    return imageio.save_image(path, doc.composed(), alpha=doc.alpha, metadata=meta)


def export_mask(doc: Document, path: Path) -> Path:
    """The painted mask, or the shown result's mask once the painted one was cleared by an accept."""
    check_suffix(path)
    mask = doc.mask
    if not mask.any() and provenance(doc) is not None:
        mask = provenance(doc).mask
    if not mask.any():
        raise InpaintError("there is no mask to export: paint one first")
    return imageio.save_mask(path, mask)


def export_strip(doc: Document, path: Path) -> Path:
    """original | masked | result for the shown (or last accepted) fill."""
    check_suffix(path)
    item = provenance(doc)
    if item is None:
        raise InpaintError("there is no result to show in a strip: fill first")
    strip = imageio.make_strip(item.base(), item.mask, item.image)
    return imageio.save_image(path, strip, metadata=item.metadata(source(doc)))
