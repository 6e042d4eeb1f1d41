"""A 1000 x 800 hole in a 12 MP photo with the patch method: filled at full resolution (detail passes at the scales
where the hole is longer than 512 px) against the way it was done before, filling at the scale that makes the hole
512 px and scaling the fill back up (issue 25: "large holes are processed coarse-to-fine without quality loss you
can see").

The photo is a texture with real pixel-level grain (scikit-image's brick, grass or gravel, mirrored and tiled to
4000 x 3000; an upscaled small photo would have no fine detail to lose). Each way runs in its own process (peak
memory is the process's). Columns: seconds, peak memory, and the hole's detail: mean |Laplacian| inside the hole
(eroded by 4 px) over that in a 50 px ring around it; 1.0 = as detailed as the photo around it.

    python benchmarks/patch_large_hole.py --textures brick,gravel

Prints a table and writes benchmarks/results/patch_large_hole.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_report  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "patch_large_hole.json"
WAYS = ("scaled to 512 px (before)", "full resolution (now)")


def photo(texture: str) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    t = getattr(data, texture)()
    t = np.repeat(t[..., None], 3, 2) if t.ndim == 2 else t[..., :3]
    row = np.concatenate([t, t[:, ::-1]], 1)
    tile = np.concatenate([row, row[::-1]], 0)
    img = np.tile(tile, (3000 // tile.shape[0] + 1, 4000 // tile.shape[1] + 1, 1))[:3000, :4000].copy()
    mask = np.zeros((3000, 4000), bool)
    mask[1100:1900, 1500:2500] = True
    return img, mask


def hole_detail(out: np.ndarray, mask: np.ndarray) -> float:
    import cv2

    lap = np.abs(cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((101, 101), np.uint8)).astype(bool) & ~mask
    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    return float(lap[inner].mean() / lap[ring].mean())


def fill(way: str, texture: str) -> dict:
    """One fill in this process (the parent runs each in a fresh one)."""
    import cv2

    from engine.patch.patchmatch import PatchConfig, patch_inpaint
    from engine.patch.pipeline import MAX_HOLE

    img, mask = photo(texture)
    t0 = time.perf_counter()
    if way == WAYS[0]:
        s = MAX_HOLE / 1000
        small = cv2.resize(img, (round(4000 * s), round(3000 * s)), interpolation=cv2.INTER_AREA)
        hole = cv2.resize(mask.astype(np.uint8), small.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
        up = cv2.resize(patch_inpaint(small, hole), (4000, 3000), interpolation=cv2.INTER_CUBIC)
        out = np.where(mask[..., None], up, img)
    else:
        out = patch_inpaint(img, mask, PatchConfig(max_hole=MAX_HOLE))
    seconds = time.perf_counter() - t0
    return {"texture": texture, "way": way, "seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "hole_detail": round(hole_detail(out, mask), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--textures", default="brick,gravel")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--one", nargs=2, metavar=("WAY", "TEXTURE"), help=argparse.SUPPRESS)  # a child's row
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(fill(*args.one)))
        return 0
    rows = []
    print(f"{'texture':<9}{'way':<28}{'seconds':>9}{'peak MB':>9}{'hole detail':>13}", flush=True)
    for texture in args.textures.split(","):
        for way in WAYS:
            done = subprocess.run([sys.executable, __file__, "--one", way, texture], capture_output=True, text=True,
                                  cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"{way} on {texture} failed: {done.stderr.strip().splitlines()[-1]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{texture:<9}{way:<28}{r['seconds']:>9.1f}{r['peak_rss_mb']:>9}{r['hole_detail']:>13.3f}",
                  flush=True)
    write_report(args.out, {"rows": rows, "photo": "4000 x 3000, mirrored texture tiles", "hole": "1000 x 800"},
                 __file__, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
