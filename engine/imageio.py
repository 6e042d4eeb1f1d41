"""Loading and saving images with the real-world cases handled, and nothing written half-way.

Loading normalises everything to 8-bit sRGB RGB plus an optional alpha channel: EXIF orientation applied, ICC
profiles converted to sRGB, 16-bit / 32-bit / float greyscale rescaled, palette / greyscale / CMYK converted.
Corrupt or truncated files and decompression bombs are refused with a one-line ``ImageError``.
Saving writes to a temporary file in the target folder and renames it over the target (atomic on POSIX and
Windows), so a crash or full disk never leaves a half-written export.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from engine.api import InpaintError

MAX_PIXELS = 120_000_000  # ~11k x 11k: beyond that an inpainting editor has no business decoding it
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                ".bmp": "BMP"}
OPEN_SUFFIXES = tuple(SAVE_FORMATS) + (".gif",)


class ImageError(InpaintError):
    """A file that cannot be used as an image; the message names the file and the reason in one line."""


@dataclass
class LoadedImage:
    rgb: np.ndarray  # H x W x 3 uint8, sRGB
    alpha: np.ndarray | None  # H x W uint8, or None when the file has no transparency
    path: Path
    info: dict = field(default_factory=dict)  # "mode", "format", "size", "icc_converted", "exif_rotated"


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        hi = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return np.clip(np.rint(arr.astype(np.float64) * 255.0 / hi), 0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 if (lo >= 0 and hi <= 1.0) else 255.0 / max(hi - lo, 1e-12)
        shift = 0.0 if (lo >= 0 and hi <= 1.0) else lo
        return np.clip(np.rint((np.nan_to_num(arr) - shift) * scale), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _to_srgb(im: Image.Image) -> tuple[Image.Image, bool]:
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        return im, False
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if im.mode in ("RGBA", "LA") else "RGB"
        if im.mode == "LA":
            im = im.convert("RGBA")
        return ImageCms.profileToProfile(im, src, dst, outputMode=out_mode), True
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im, False  # a broken profile is not worth refusing the image over: use the raw values


def _decode(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode in ("1", "L", "La"):
        im = im.convert("L")
    elif mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV":
        im = im.convert("RGB")
    elif mode == "LA":
        im = im.convert("RGBA")
    elif mode.startswith("I") or mode == "F":  # 16/32-bit integer or float greyscale
        grey = _to_8bit(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2), None
    arr = np.asarray(im)
    if arr.ndim == 2:
        return np.repeat(_to_8bit(arr)[..., None], 3, axis=2), None
    arr = _to_8bit(arr)
    if arr.shape[2] == 4:
        alpha = arr[..., 3].copy()
        return np.ascontiguousarray(arr[..., :3]), (None if alpha.min() == 255 else alpha)
    return np.ascontiguousarray(arr[..., :3]), None


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read ``path`` as 8-bit sRGB RGB (+ alpha). Raises ImageError with a one-line reason."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                with Image.open(p) as im:
                    fmt = im.format
                    if im.width * im.height > MAX_PIXELS:
                        raise Image.DecompressionBombError("too many pixels")
                    im.load()  # decode now so truncation is detected here, not later
                    rotated = im.getexif().get(0x0112, 1) != 1  # EXIF Orientation tag
                    im2, icc = _to_srgb(ImageOps.exif_transpose(im))
                    rgb, alpha = _decode(im2)
                    mode = im.mode
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{p}: refused, the image is too large (more than {MAX_PIXELS // 1_000_000} megapixels; "
                         "possibly a decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image file, or a format that cannot be read") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{p}: corrupt or truncated image ({reason})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageError(f"{p}: image is too small ({rgb.shape[1]}x{rgb.shape[0]})")
    info = {"mode": mode, "format": fmt, "size": (rgb.shape[1], rgb.shape[0]), "icc_converted": icc,
            "exif_rotated": rotated}
    return LoadedImage(rgb=rgb, alpha=alpha, path=p, info=info)


MASK_SNAP = 8  # grey levels within this of black or white are black or white: JPEG noise is not a soft edge


def load_mask(path: str | os.PathLike, shape: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A mask file as uint8 alpha H x W: white = fill, black = keep, grey = a soft edge (partly filled); levels
    within MASK_SNAP of black or white snap to them. A sketch (``what="sketch"``) is bool: white = stroke.
    Transparent pixels of an RGBA file count as black."""
    loaded = load_image(path)
    grey = loaded.rgb.astype(np.float32).mean(axis=2)
    if loaded.alpha is not None:
        grey = grey * (loaded.alpha.astype(np.float32) / 255.0)
    if grey.shape != tuple(shape):
        raise ImageError(f"{path}: {what} is {grey.shape[1]}x{grey.shape[0]} but the image is {shape[1]}x{shape[0]}")
    if what == "sketch":
        return grey > 127
    alpha = np.rint(grey).astype(np.uint8)
    alpha[alpha < MASK_SNAP] = 0
    alpha[alpha > 255 - MASK_SNAP] = 255
    return alpha


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
               metadata: dict[str, str] | None = None, quality: int = 95) -> Path:
    """Write atomically; the format follows the suffix. PNG keeps ``metadata`` as text chunks; alpha is kept for
    formats that have it (PNG, WebP, TIFF) and dropped for JPEG/BMP."""
    p = Path(path)
    fmt = SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ImageError(f"{p}: unsupported file type {p.suffix or '(none)'}; use one of "
                         f"{', '.join(sorted(set(SAVE_FORMATS)))}")
    keeps_alpha = alpha is not None and fmt in ("PNG", "WEBP", "TIFF")
    im = Image.fromarray(np.dstack([rgb, alpha]) if keeps_alpha else rgb, "RGBA" if keeps_alpha else "RGB")
    kwargs: dict = {}
    if fmt == "PNG" and metadata:
        info = PngImagePlugin.PngInfo()
        for k, v in metadata.items():
            info.add_itxt(str(k), str(v))
        kwargs["pnginfo"] = info
    elif fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = int(quality)
    try:
        _atomic_write(p, lambda fh: im.save(fh, format=fmt, **kwargs))
    except OSError as exc:
        raise ImageError(f"{p}: cannot write ({exc.strerror or exc})") from None
    return p


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """White = fill, black = keep, grey = partly (the CLI's mask convention); bool or uint8 alpha."""
    alpha = mask.astype(np.uint8) * 255 if mask.dtype == np.bool_ else mask.astype(np.uint8)
    return save_image(path, np.repeat(alpha[..., None], 3, axis=2))


def make_strip(original: np.ndarray, mask: np.ndarray, result: np.ndarray, gap: int = 8) -> np.ndarray:
    """original | masked (hole shown neutral grey) | result, side by side on white: the viewer of seed 000."""
    masked = original.copy()
    masked[mask.astype(bool)] = 128
    h, w = original.shape[:2]
    strip = np.full((h, 3 * w + 2 * gap, 3), 255, np.uint8)
    for i, panel in enumerate((original, masked, result)):
        strip[:, i * (w + gap): i * (w + gap) + w] = panel
    return strip


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), sorted by name."""
    return sorted(q for q in Path(folder).iterdir() if q.is_file() and q.suffix.lower() in OPEN_SUFFIXES)
