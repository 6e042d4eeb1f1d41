"""Does the picked model fit what is in front of the user? Plain checks on ``ModelInfo`` and the image, no Qt and
no model names: a model's category, working size, ``grey`` and ``outpaint`` flags say what it is made for.

- ``domain_warning``: a model made for small grey digits on a colour photo (or a large one) paints grey strokes,
  not the photo: the picker shows a warning and Fill asks first.
- ``outpaint_problem``: a border that Expand canvas added has nothing beyond it; a model that only continues the
  pixels around a hole cannot fill it, so Fill says why and offers one that can.
- ``user_words``: an engine error names a parameter by its key (what the command line uses); the editor shows
  the label the user sees in the panel instead.
"""
from __future__ import annotations

import re

import numpy as np

from engine.api import ModelInfo

GROUPS = (("photos", "For photos"), ("faces", "For faces"), ("digits", "For digits"), ("yours", "Your models"))


def is_colour(image: np.ndarray) -> bool:
    """True when the channels differ anywhere visibly (a grey photo stored as RGB is not colour)."""
    small = image[:: max(1, image.shape[0] // 128), :: max(1, image.shape[1] // 128)].astype(np.int16)
    if small.ndim < 3 or small.shape[2] < 3:
        return False
    spread = np.abs(small[..., 0] - small[..., 1]) + np.abs(small[..., 1] - small[..., 2])
    return float(np.percentile(spread, 99)) > 12


def domain_warning(info: ModelInfo | None, image: np.ndarray) -> str | None:
    """One plain sentence when the model is not made for this image, else None."""
    if info is None or image.shape[:2] == (1, 1):
        return None
    small_grey = info.category == "digits" or info.grey
    if not small_grey:
        return None
    h, w = image.shape[:2]
    res = info.resolution
    if is_colour(image):
        what = "a colour photo"
    elif res and min(h, w) > 8 * res:
        what = f"a {w} x {h} photo"
    else:
        return None
    return (f"{info.title} is made for {info.domain}, and this is {what}: it will paint grey strokes, not the "
            f"photo. Pick a model under \u201cFor photos\u201d.")


def photo_default(models: list[ModelInfo], default: str) -> ModelInfo | None:
    """The model to suggest for a photo: the measured default, else the first usable photo model."""
    usable = [m for m in models if m.weights_present]
    for m in usable:
        if m.name == default:
            return m
    return next((m for m in usable if m.category == "photos"), None)


def outpaint_model(models: list[ModelInfo], default: str) -> ModelInfo | None:
    """A usable model that can fill a border (the photo default if it can)."""
    usable = [m for m in models if m.weights_present and m.outpaint]
    return next((m for m in usable if m.name == default), None) or next(
        (m for m in usable if m.category == "photos"), None) or (usable[0] if usable else None)


def outpaint_problem(info: ModelInfo | None, border_hole: np.ndarray | None) -> str | None:
    """Why ``info`` cannot fill the masked part of a new border, or None when it can (or there is none)."""
    if info is None or border_hole is None or info.outpaint:
        return None
    return (f"{info.title} cannot fill the new border: it continues the pixels around a hole inward, and a border "
            f"has photo on one side only, so it would only smear the old edge outward.")


def user_words(message: str, info: ModelInfo | None) -> str:
    """An engine message with parameter keys replaced by their labels ("set the 'key' parameter" ->
    "set the “Label” setting") and the model's key by its title."""
    if info is None:
        return message
    for p in info.params:
        label = p.label or p.name
        if label == p.name:
            continue
        quoted = f"\u201c{label}\u201d"
        message = re.sub(rf"(['\"`]){re.escape(p.name)}\1 parameter", f"{quoted} setting", message)
        message = re.sub(rf"--param {re.escape(p.name)}=", f"{quoted} = ", message)
        message = re.sub(rf"(['\"`]){re.escape(p.name)}\1", quoted, message)
        message = re.sub(rf"\bparameter {re.escape(p.name)}\b", f"setting {quoted}", message)
    if info.title and info.name != info.title:
        message = re.sub(rf"(?<![\w/.-]){re.escape(info.name)}(?![\w/.-])", info.title, message)
    return message
