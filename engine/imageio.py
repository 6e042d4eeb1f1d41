"""Loading and saving images with the real-world cases handled, and nothing written half-way.

Loading normalises everything to 8-bit sRGB RGB plus an optional alpha channel: EXIF orientation applied, ICC
profiles converted to sRGB, 16-bit / 32-bit / float greyscale rescaled, palette / greyscale / CMYK converted.
Corrupt or truncated files are refused with a one-line ``ImageError``; so are images whose header declares more
pixels than an editor should hold, or far more than the file's size can honestly encode (a decompression bomb),
before a byte of them is decoded. What was used with a caveat (the first frame of an animated GIF or a multi-page
TIFF, an unreadable colour profile) is said in ``LoadedImage.warnings``.
Saving goes through ``engine.atomic.write_atomic``: a crash or full disk never leaves a half-written export, the
file gets the permissions the user's umask gives (an overwritten file keeps its own), and temporary files that a
killed writer left behind are removed once they are certainly dead.
"""
from __future__ import annotations

import io
import threading
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from engine.api import InpaintError
from engine.atomic import part_prefix, write_atomic

MAX_PIXELS = 120_000_000  # ~11k x 11k: beyond that an inpainting editor has no business decoding it
# A decompression bomb: from BOMB_PIXELS on, an image must not decode to more than BOMB_RATIO times its file's size
# (as 8-bit RGB). Photos compress 2-20x; a 291 KB PNG declaring 10000 x 10000 pixels expands 1000x.
BOMB_PIXELS = 40_000_000
BOMB_RATIO = 250
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
    info: dict = field(default_factory=dict)  # "mode", "format", "size", "icc_converted", "exif_rotated", "frames"
    warnings: list[str] = field(default_factory=list)  # one line each, naming the file: what was used with a caveat


@dataclass(frozen=True)
class ImageProbe:
    """What a file's header says, read without decoding its pixels (``probe_image``)."""

    path: Path
    size: tuple[int, int]  # (width, height) as shown, i.e. after the EXIF orientation
    format: str | None
    frames: int


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        hi = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return np.clip(np.rint(arr.astype(np.float64) * 255.0 / hi), 0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scale = 255.0 if (lo >= 0 and hi <= 1.0) else 255.0 / max(hi - lo, 1e-12)
        shift = 0.0 if (lo >= 0 and hi <= 1.0) else lo
        clean = np.nan_to_num(arr.astype(np.float64), nan=shift, posinf=hi, neginf=lo)
        return np.clip(np.rint((clean - shift) * scale), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _to_srgb(im: Image.Image) -> tuple[Image.Image, bool, bool]:
    """(image in sRGB, converted, profile unreadable)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        return im, False, False
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if im.mode in ("RGBA", "LA") else "RGB"
        if im.mode == "LA":
            im = im.convert("RGBA")
        return ImageCms.profileToProfile(im, src, dst, outputMode=out_mode), True, False
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im, False, True  # a broken profile is not worth refusing the image over: use the raw values


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


_PIL_LIMIT = threading.Lock()
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _open(p: Path) -> tuple[Image.Image, int]:
    """The file opened lazily (nothing decoded), its header checked against the limits, and its frame count."""
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a folder, not an image")
    file_size = p.stat().st_size
    with _PIL_LIMIT:  # PIL's own bomb check warns (or fails) on size alone: ours below also knows the file's size
        old_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            im = Image.open(p)
            try:
                w, h = im.size
                if w < 1 or h < 1:
                    raise ImageError(f"{p}: corrupt image (it declares {w}x{h} pixels)")
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{p}: refused, the image is too large ({w}x{h}, more than "
                                     f"{MAX_PIXELS // 1_000_000} megapixels)")
                if w * h >= BOMB_PIXELS and w * h * 3 > BOMB_RATIO * max(file_size, 1):
                    raise ImageError(f"{p}: refused, a {_kb(file_size)} file that declares {w}x{h} pixels "
                                     f"({w * h / 1e6:.0f} megapixels) is likely a decompression bomb")
                frames = int(getattr(im, "n_frames", 1) or 1)
            except BaseException:
                im.close()
                raise
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
    return im, frames


def _kb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{max(n, 1) / 1e3:.0f} KB"


def _orientation(im: Image.Image, decoded: bool) -> int:
    """The EXIF Orientation (1-8; 1 when absent or unreadable). PNG keeps EXIF in a chunk that PIL finds only by
    decoding, so an undecoded PNG reports what its header chunks say."""
    try:
        if not decoded and im.format == "PNG":
            raw = im.info.get("exif")
            exif = Image.Exif()
            if raw:
                exif.load(raw)
        else:
            exif = im.getexif()
        value = exif.get(0x0112, 1)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _refusal(p: Path, exc: BaseException) -> ImageError:
    """The one-line ImageError for whatever a decoder raised on this file."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, UnidentifiedImageError):
        return ImageError(f"{p}: not an image file, or a format that cannot be read")
    if isinstance(exc, PermissionError):
        return ImageError(f"{p}: permission denied")
    if isinstance(exc, MemoryError):
        return ImageError(f"{p}: not enough memory to decode it")
    reason = str(exc).splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return ImageError(f"{p}: corrupt or truncated image ({reason})")


def probe_image(path: str | os.PathLike) -> ImageProbe:
    """The size (as shown), format and frame count from the header alone: cheap checks of many files before work.
    Raises the ImageError ``load_image`` would for a missing, unreadable, too large or bomb-like file."""
    p = Path(path)
    try:
        im, frames = _open(p)
        with im:
            w, h = im.size
            if _orientation(im, decoded=False) >= 5:  # 5-8 turn the image a quarter
                w, h = h, w
            return ImageProbe(p, (w, h), im.format, frames)
    except Exception as exc:  # PIL raises a zoo of types on junk: each is one line naming the file
        raise _refusal(p, exc) from None


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read ``path`` as 8-bit sRGB RGB (+ alpha). Raises ImageError with a one-line reason."""
    p = Path(path)
    notes: list[str] = []
    try:
        im, frames = _open(p)
        with im:
            fmt, mode = im.format, im.mode
            im.load()  # decode now (the first frame) so truncation is detected here, not later
            orientation = _orientation(im, decoded=True)
            shown = im.transpose(_TRANSPOSE[orientation]) if orientation != 1 else im
            shown, icc, icc_broken = _to_srgb(shown)
            rgb, alpha = _decode(shown)
    except Exception as exc:
        raise _refusal(p, exc) from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageError(f"{p}: image is too small ({rgb.shape[1]}x{rgb.shape[0]})")
    if frames > 1:
        notes.append(f"{p}: has {frames} frames (an animation or several pages); only the first is used")
    if icc_broken:
        notes.append(f"{p}: its colour profile is unreadable; its colours are used as stored")
    info = {"mode": mode, "format": fmt, "size": (rgb.shape[1], rgb.shape[0]), "icc_converted": icc,
            "exif_rotated": orientation != 1, "frames": frames}
    return LoadedImage(rgb=rgb, alpha=alpha, path=p, info=info, warnings=notes)


MASK_SNAP = 8  # grey levels within this of black or white are black or white: JPEG noise is not a soft edge


def load_mask(path: str | os.PathLike, shape: tuple[int, int], what: str = "mask",
              warnings: list[str] | None = None) -> np.ndarray:
    """A mask file as uint8 alpha H x W: white = fill, black = keep, grey = a soft edge (partly filled); levels
    within MASK_SNAP of black or white snap to them. A sketch (``what="sketch"``) is bool: white = stroke.
    Transparent pixels of an RGBA file count as black. The file's warnings are appended to ``warnings``."""
    loaded = load_image(path)
    if warnings is not None:
        warnings.extend(loaded.warnings)
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


# ---- writing -------------------------------------------------------------------------------------------------
_MAX_LIMITS = {"JPEG": 65_535, "WEBP": 16_383}  # the formats' largest side


def _format(p: Path) -> str:
    fmt = SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ImageError(f"{p}: unsupported file type {p.suffix or '(none)'}; use one of "
                         f"{', '.join(sorted(set(SAVE_FORMATS)))}")
    return fmt


def check_output(path: str | os.PathLike, size: tuple[int, int] | None = None) -> Path:
    """Everything about writing ``path`` that can be known before any work: a supported suffix, a format that can
    hold ``size`` (width, height), and a folder that exists (or can be made) where this user can create files.
    Creates nothing that stays. Raises ImageError with one line."""
    p = Path(path)
    fmt = _format(p)
    if size is not None and fmt in _MAX_LIMITS and max(size) > _MAX_LIMITS[fmt]:
        raise ImageError(f"{p}: {fmt} holds at most {_MAX_LIMITS[fmt]} pixels a side, the image is "
                         f"{size[0]}x{size[1]}; use .png or .tif")
    if p.is_dir():
        raise ImageError(f"{p}: is a folder")
    folder = p.parent
    while not folder.exists():  # the nearest existing folder above: where the missing ones would be made
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise ImageError(f"{p}: cannot write there ({folder} is not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=part_prefix(p), suffix=".part", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ImageError(f"{p}: cannot write in {folder} ({exc.strerror or exc})") from None
    return p


def _text_value(value: object) -> str:
    """PNG iTXt is UTF-8: a file name with undecodable bytes (surrogate escapes) is written with them escaped."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
               metadata: dict[str, str] | None = None, quality: int = 95) -> Path:
    """Write atomically; the format follows the suffix. PNG keeps ``metadata`` as text chunks; alpha is kept for
    formats that have it (PNG, WebP, TIFF) and dropped for JPEG/BMP. The file gets the user's umask permissions
    (an overwritten file keeps its own)."""
    p = Path(path)
    fmt = _format(p)
    keeps_alpha = alpha is not None and fmt in ("PNG", "WEBP", "TIFF")
    im = Image.fromarray(np.dstack([rgb, alpha]) if keeps_alpha else rgb, "RGBA" if keeps_alpha else "RGB")
    kwargs: dict = {}
    if fmt == "PNG" and metadata:
        info = PngImagePlugin.PngInfo()
        for k, v in metadata.items():
            info.add_itxt(_text_value(k)[:79], _text_value(v))
        kwargs["pnginfo"] = info
    elif fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = int(quality)
    try:
        write_atomic(p, lambda fh: im.save(fh, format=fmt, **kwargs))
    except OSError as exc:
        raise ImageError(f"{p}: cannot write ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a side too large for the format
        raise ImageError(f"{p}: cannot write ({str(exc).splitlines()[0] if str(exc) else 'ValueError'})") from None
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
    """Image files directly inside ``folder`` (by suffix), sorted by name; hidden files (".name", e.g. macOS's
    "._photo.jpg" or a temporary file) are not images."""
    return sorted(q for q in Path(folder).iterdir()
                  if not q.name.startswith(".") and q.suffix.lower() in OPEN_SUFFIXES and q.is_file())
