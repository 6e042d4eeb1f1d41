"""Procedural portraits with exact smile / glasses labels (numpy + OpenCV drawing, no torch).

No labelled face set is reachable in this offline project, so the default face model learns from faces drawn here.
Every portrait is a pure function of ``(seed, smile, glasses)``: all random choices are drawn first, in a fixed
order, and only then is the face drawn, so the smiling and the neutral render of one seed differ in the mouth box
only, and the render with and without glasses differs in the eye band only (``tests/test_face_generator.py``).

Drawing happens on a canvas ``SUPER`` times the output size with antialiased primitives, then a pose warp
(rotation, scale, shift), a lighting gradient and sensor noise are applied and the canvas is shrunk with
INTER_AREA (box filtering, so edges come out antialiased). About 1 ms per 64x64 face on one CPU core.

The geometry returned with each face (``mouth_box``, ``eye_box``: x0, y0, x1, y1 in output pixels, after the pose
warp) is what the training masks for the "mouth" and "eye band" regimes are built from.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUPER = 2  # drawing canvas = SUPER x output size
_SHIFT = 4  # fixed-point bits for cv2 drawing (sub-pixel positions)
_F = 1 << _SHIFT

SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [160, 102, 66],
                 [120, 76, 50], [90, 58, 40], [250, 210, 170]], np.float32)
HAIR = np.array([[20, 16, 14], [60, 40, 25], [110, 70, 35], [200, 160, 90], [230, 200, 140], [150, 60, 25],
                 [170, 170, 170], [90, 90, 95], [235, 235, 230]], np.float32)
IRIS = np.array([[70, 45, 25], [40, 25, 15], [70, 110, 160], [80, 120, 70], [110, 90, 50], [60, 70, 80]], np.float32)
FRAME = np.array([[15, 15, 15], [70, 40, 20], [200, 170, 60], [170, 30, 30], [30, 50, 150], [140, 140, 150],
                  [120, 20, 90]], np.float32)


@dataclass
class Face:
    image: np.ndarray  # res x res x 3 uint8 RGB
    smile: bool
    glasses: bool
    mouth_box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in output pixels
    eye_box: tuple[int, int, int, int]


def _p(x: float) -> int:
    """Canvas coordinate -> cv2 fixed-point integer."""
    return int(round(x * _F))


def _ellipse(img, c, axes, angle, color, thickness=-1):
    cv2.ellipse(img, (_p(c[0]), _p(c[1])), (max(1, _p(axes[0])), max(1, _p(axes[1]))), angle, 0, 360,
                tuple(float(v) for v in color), thickness if thickness < 0 else max(1, int(round(thickness))),
                cv2.LINE_AA, _SHIFT)


def _poly(img, pts, color, closed=False, thickness=-1):
    arr = np.round(np.asarray(pts, np.float64) * _F).astype(np.int32).reshape(-1, 1, 2)
    col = tuple(float(v) for v in color)
    if thickness < 0:
        cv2.fillPoly(img, [arr], col, cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(img, [arr], closed, col, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _mix(a, b, t):
    return a * (1 - t) + b * t


def sample_params(rng: np.random.Generator, res: int) -> dict:
    """Every random choice of one portrait, drawn in a fixed order (independent of the smile / glasses flags)."""
    s = res * SUPER
    u = rng.uniform
    P: dict = {}
    P["bg0"] = u(20, 235, 3)
    P["bg1"] = u(20, 235, 3)
    P["bg_kind"] = int(rng.integers(0, 3))  # 0 flat-ish gradient, 1 stripes, 2 blobs
    P["bg_blobs"] = [(u(0, s), u(0, s), u(0.05, 0.3) * s, u(20, 235, 3)) for _ in range(4)]
    P["bg_freq"] = u(2, 8)
    P["bg_angle"] = u(0, np.pi)
    i, j = rng.integers(0, len(SKIN), 2)
    P["skin"] = np.clip(_mix(SKIN[i], SKIN[j], u()) + u(-12, 12, 3), 0, 255)
    P["cx"], P["cy"] = s * 0.5, s * u(0.47, 0.53)
    P["fa"], P["fb"] = s * u(0.25, 0.31), s * u(0.32, 0.38)  # face half-width, half-height
    P["jaw"] = u(0.75, 1.0)  # lower face width relative to upper
    P["hair"] = np.clip(HAIR[rng.integers(0, len(HAIR))] + u(-15, 15, 3), 0, 255)
    P["hair_style"] = int(rng.integers(0, 5))  # 0 bald, 1 short cap, 2 long, 3 bun, 4 side fringe
    P["hair_len"] = u(0.2, 0.6)
    P["cloth"] = u(10, 245, 3)
    P["neck_w"] = u(0.35, 0.5)
    P["eye_y"] = u(-0.12, -0.02)  # relative to fb, from the centre
    P["eye_dx"] = u(0.36, 0.46)  # relative to fa
    P["eye_w"], P["eye_h"] = u(0.15, 0.21), u(0.07, 0.11)  # relative to fa
    P["iris"] = np.clip(IRIS[rng.integers(0, len(IRIS))] + u(-10, 10, 3), 0, 255)
    P["look"] = u(-0.3, 0.3, 2)
    P["brow_dy"], P["brow_tilt"], P["brow_t"] = u(0.13, 0.2), u(-0.06, 0.08), u(0.025, 0.05)
    P["nose_len"], P["nose_w"] = u(0.18, 0.3), u(0.08, 0.14)
    P["mouth_y"] = u(0.5, 0.6)  # relative to fb
    P["mouth_w"] = u(0.3, 0.42)  # half-width relative to fa
    P["lip"] = np.clip(P["skin"] * u(0.55, 0.8) + np.array([40, 0, 5]) * u(0, 1), 0, 255)
    P["smile_curve"], P["smile_open"], P["teeth"] = u(0.12, 0.22), u(0.07, 0.15), bool(u() < 0.75)
    P["neutral_curve"], P["neutral_t"] = u(-0.04, 0.02), u(0.025, 0.045)
    P["glass_shape"] = int(rng.integers(0, 3))  # 0 round, 1 rectangle, 2 wide oval
    P["frame"] = np.clip(FRAME[rng.integers(0, len(FRAME))] + u(-15, 15, 3), 0, 255)
    P["frame_t"] = u(0.018, 0.04)
    P["lens_alpha"] = float(rng.choice([0.0, u(0.1, 0.35), u(0.6, 0.9)], p=[0.4, 0.35, 0.25]))
    P["lens_tint"] = u(0, 90, 3)
    P["lens_size"] = u(1.35, 1.7)
    P["angle"], P["scale"] = u(-9, 9), u(0.88, 1.12)
    P["shift"] = u(-0.05, 0.05, 2) * s
    P["light_dir"], P["light_amp"], P["light_gain"] = u(0, 2 * np.pi), u(0.0, 0.35), u(0.8, 1.15)
    P["noise"] = u(0, 5)
    P["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    return P


def _background(P, s):
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    t = xx * np.cos(P["bg_angle"]) + yy * np.sin(P["bg_angle"])
    if P["bg_kind"] == 1:
        t = 0.5 + 0.5 * np.sin(t * P["bg_freq"] * np.pi)
    img = _mix(P["bg0"][None, None], P["bg1"][None, None], t[..., None]).astype(np.float32)
    if P["bg_kind"] == 2:
        for bx, by, br, bc in P["bg_blobs"]:
            _ellipse(img, (bx, by), (br, br), 0, bc)
    return img


def render(P: dict, res: int, smile: bool, glasses: bool) -> Face:
    s = res * SUPER
    img = _background(P, s)
    cx, cy, fa, fb = P["cx"], P["cy"], P["fa"], P["fb"]
    skin, hair = P["skin"], P["hair"]
    shade = skin * 0.8
    # Body, neck, long hair behind the head.
    _ellipse(img, (cx, s * 1.08), (s * 0.42, s * 0.28), 0, P["cloth"])
    if P["hair_style"] == 2:
        _poly(img, [(cx - fa * 1.15, cy - fb * 0.3), (cx + fa * 1.15, cy - fb * 0.3),
                    (cx + fa * 1.25, cy + fb * (0.6 + P["hair_len"])),
                    (cx - fa * 1.25, cy + fb * (0.6 + P["hair_len"]))],
              hair)
    nw = fa * P["neck_w"]
    _poly(img, [(cx - nw, cy + fb * 0.6), (cx + nw, cy + fb * 0.6),
                (cx + nw * 1.1, s * 0.92), (cx - nw * 1.1, s * 0.92)],
          shade)
    # Ears, head (upper ellipse + tapered jaw polygon).
    for sx in (-1, 1):
        _ellipse(img, (cx + sx * fa * 0.98, cy - fb * 0.02), (fa * 0.13, fb * 0.17), 0, shade)
    _ellipse(img, (cx, cy), (fa, fb), 0, skin)
    jaw = P["jaw"]
    ang = np.linspace(0, np.pi, 24)
    _poly(img, np.stack([cx + np.cos(ang) * fa * _mix(1.0, jaw, np.sin(ang)), cy + np.sin(ang) * fb], 1), skin)
    # Hair on top.
    hs = P["hair_style"]
    if hs in (1, 2, 3, 4):
        ang = np.linspace(np.pi, 2 * np.pi, 24)
        top = np.stack([cx + np.cos(ang) * fa * 1.06, cy - fb * 0.18 + np.sin(ang) * fb * 0.9], 1)
        fringe = np.array([(cx + fa * 1.06, cy - fb * 0.05), (cx + fa * 0.7, cy - fb * 0.45),
                           (cx - fa * (0.7 if hs != 4 else -0.2), cy - fb * (0.5 if hs != 4 else 0.3)),
                           (cx - fa * 1.06, cy - fb * 0.05)])
        _poly(img, np.concatenate([top, fringe]), hair)
        if hs == 3:
            _ellipse(img, (cx, cy - fb * 1.02), (fa * 0.4, fb * 0.25), 0, hair)
    # Eyes and brows.
    ey = cy + P["eye_y"] * fb
    ew, eh = P["eye_w"] * fa, P["eye_h"] * fa
    eyes = [(cx + sx * P["eye_dx"] * fa, ey) for sx in (-1, 1)]
    for (ex, _), sx in zip(eyes, (-1, 1)):
        _ellipse(img, (ex, ey), (ew, eh), 0, (245, 245, 240))
        ix, iy = ex + P["look"][0] * ew * 0.5, ey + P["look"][1] * eh * 0.3
        _ellipse(img, (ix, iy), (eh * 0.95, eh * 0.95), 0, P["iris"])
        _ellipse(img, (ix, iy), (eh * 0.42, eh * 0.42), 0, (10, 10, 10))
        _ellipse(img, (ex, ey), (ew, eh), 0, shade * 0.7, thickness=max(1.0, fa * 0.02))
        by = ey - P["brow_dy"] * fb
        tilt = P["brow_tilt"] * fb
        _poly(img, [(ex - sx * ew * 1.1, by + tilt), (ex, by - fb * 0.02), (ex + sx * ew * 1.1, by - tilt * 0.3)],
              hair * 0.8, thickness=P["brow_t"] * fb)
    # Nose.
    ny0, ny1 = ey + eh, ey + eh + P["nose_len"] * fb
    nw = P["nose_w"] * fa
    _poly(img, [(cx + nw * 0.2, ny0), (cx + nw * 0.5, ny1), (cx - nw * 0.1, ny1 + fb * 0.02)], shade * 0.85,
          thickness=max(1.0, fa * 0.025))
    for sx in (-1, 1):
        _ellipse(img, (cx + sx * nw * 0.55, ny1), (nw * 0.25, nw * 0.15), 0, shade * 0.6)
    # Mouth (the only place the smile flag acts).
    my, mw = cy + P["mouth_y"] * fb, P["mouth_w"] * fa
    xs = np.linspace(-1, 1, 21)
    if smile:
        cu, op = P["smile_curve"] * fb, P["smile_open"] * fb
        upper = np.stack([cx + xs * mw, my - cu * (1 - xs**2) * 0.25 + cu * 0.1], 1)
        lower = np.stack([cx + xs * mw, my + (cu * 0.1 + op) * (1 - xs**2) ** 0.8], 1)[::-1]
        upper[:, 1] -= cu * 0.45 * xs**2  # corners raised
        lower[:, 1] -= cu * 0.45 * xs[::-1] ** 2
        _poly(img, np.concatenate([upper, lower]), (90, 20, 25))
        if P["teeth"]:
            tee = np.stack([cx + xs * mw * 0.85, upper[:, 1] + op * 0.45 * (1 - xs**2)], 1)
            _poly(img, np.concatenate([upper[2:-2], tee[2:-2][::-1]]), (240, 238, 228))
        _poly(img, np.concatenate([upper, lower, upper[:1]]), P["lip"], thickness=fa * 0.035)
    else:
        cu = P["neutral_curve"] * fb
        line = np.stack([cx + xs * mw * 0.85, my + cu * xs**2], 1)
        _poly(img, line, P["lip"], thickness=P["neutral_t"] * fb)
        _poly(img, line + [0, P["neutral_t"] * fb * 0.9], P["lip"] * 1.1, thickness=P["neutral_t"] * fb * 0.9)
    # Glasses (only inside the eye band).
    if glasses:
        lw, lh = ew * P["lens_size"], eh * P["lens_size"] * (2.2 if P["glass_shape"] != 2 else 1.6)
        ft = P["frame_t"] * fa * 2
        for ex, _ in eyes:
            if P["glass_shape"] == 1:
                rect = [(ex - lw, ey - lh), (ex + lw, ey - lh), (ex + lw, ey + lh), (ex - lw, ey + lh)]
            else:
                a = np.linspace(0, 2 * np.pi, 28, endpoint=False)
                r = lw if P["glass_shape"] == 2 else min(lw, lh * 1.05)
                rect = np.stack([ex + np.cos(a) * r, ey + np.sin(a) * (lh if P["glass_shape"] == 2 else r)], 1)
            if P["lens_alpha"] > 0:
                lens = img.copy()
                _poly(lens, rect, P["lens_tint"])
                img = _mix(img, lens, P["lens_alpha"])
            _poly(img, rect, P["frame"], closed=True, thickness=ft)
        (lx, _), (rx, _) = eyes
        _poly(img, [(lx + lw * 0.95, ey - eh * 0.3), (cx, ey - eh * 0.6), (rx - lw * 0.95, ey - eh * 0.3)], P["frame"],
              thickness=ft)
        for ex, sx in ((lx, -1), (rx, 1)):
            _poly(img, [(ex + sx * lw, ey - eh * 0.4), (cx + sx * fa * 1.0, ey - eh * 0.6)], P["frame"], thickness=ft)
    # Pose (rotation, scale, shift), lighting, noise, then box-filter down to res.
    M = cv2.getRotationMatrix2D((cx, cy), P["angle"], P["scale"])
    M[:, 2] += P["shift"]
    img = cv2.warpAffine(img, M, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    light = P["light_gain"] * (1 + P["light_amp"] * (xx * np.cos(P["light_dir"]) + yy * np.sin(P["light_dir"])))
    img = img * light[..., None]
    img = cv2.resize(img, (res, res), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(P["noise_seed"]).standard_normal((res, res, 3)).astype(np.float32)
    img = np.clip(img + noise * P["noise"], 0, 255).astype(np.uint8)
    # Boxes in output pixels: mouth box and eye band, transformed with the pose and padded by a margin.
    mouth = [(cx - mw * 1.2, my - fb * 0.16), (cx + mw * 1.2, my + fb * 0.22)]
    lh_max = eh * 1.75 * 2.2  # tallest lens
    band = [(cx - fa * 1.08, ey - max(lh_max, P["brow_dy"] * fb * 0.6) - fb * 0.04),
            (cx + fa * 1.08, ey + lh_max + fb * 0.04)]
    return Face(img, bool(smile), bool(glasses), _warp_box(mouth, M, s, res), _warp_box(band, M, s, res))


def _warp_box(corners, M, s, res) -> tuple[int, int, int, int]:
    (x0, y0), (x1, y1) = corners
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ M.T * (res / s)
    lo, hi = np.floor(pts.min(0)), np.ceil(pts.max(0))
    return (int(max(0, lo[0])), int(max(0, lo[1])), int(min(res, hi[0])), int(min(res, hi[1])))


def make_face(seed: int, res: int = 64, smile: bool | None = None, glasses: bool | None = None) -> Face:
    """One portrait; ``smile``/``glasses`` None = drawn at random (50 %) from the seed."""
    rng = np.random.default_rng(seed)
    flags = rng.uniform(size=2)
    P = sample_params(rng, res)
    smile = bool(flags[0] < 0.5) if smile is None else smile
    glasses = bool(flags[1] < 0.5) if glasses is None else glasses
    return render(P, res, smile, glasses)


def make_batch(seeds, res: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Faces for many seeds: images N x res x res x 3 uint8, labels N x 2 float32 (smile, glasses),
    mouth boxes N x 4 and eye boxes N x 4 int32."""
    faces = [make_face(int(sd), res) for sd in seeds]
    imgs = np.stack([f.image for f in faces])
    labels = np.array([[f.smile, f.glasses] for f in faces], np.float32)
    mouth = np.array([f.mouth_box for f in faces], np.int32)
    eyes = np.array([f.eye_box for f in faces], np.int32)
    return imgs, labels, mouth, eyes


if __name__ == "__main__":  # python -m engine.face.generator : writes a contact sheet and times the renderer
    import sys
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    t = time.perf_counter()
    imgs, labels, _, _ = make_batch(range(n))
    dt = time.perf_counter() - t
    print(f"{n} faces in {dt:.2f} s ({dt / n * 1e3:.2f} ms/face)")
    k = int(np.ceil(np.sqrt(n)))
    sheet = np.zeros((k * 64, k * 64, 3), np.uint8)
    for i, im in enumerate(imgs):
        sheet[(i // k) * 64:(i // k + 1) * 64, (i % k) * 64:(i % k + 1) * 64] = im
    sheet = cv2.resize(sheet, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite("/tmp/faces_sheet.png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
