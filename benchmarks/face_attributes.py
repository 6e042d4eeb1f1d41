"""Face cVAE benchmark: attribute control, hole quality against Telea, toggle latency, real faces.

    python benchmarks/face_attributes.py                       # the shipped model, 300 held-out faces
    python benchmarks/face_attributes.py --n 100 --compare general=DIR mouth=DIR   # add a model comparison

1. Attribute control. Held-out procedural faces (seeds the cVAE and the classifier never saw). With the mouth box
   masked, the model fills with smile=1 and with smile=0 (glasses = the true label); the separate attribute
   classifier (``engine.face.classifier``, trained on another seed range) reads the composite. Same for glasses
   with the eye band masked. Target: >= 95 % for each of the four requests.
2. Hole quality per mask regime (small / big rectangles, mouth, eye band), true attributes requested,
   variation 0 (posterior mean): PSNR over the hole pixels, SSIM averaged over the hole pixels of the SSIM map
   (skimage, 7x7 Gaussian-free window, per channel) -- against OpenCV Telea on the same faces and masks.
3. Latency of the editor's instant path on the 512 x 512 astronaut with its detected face box: the first fill
   (encoder + decoder + crop/paste) and an attribute flip (decoder + crop/paste; the encoder result is cached).
4. Real faces: a picture grid (docs/images/face_real.png) of the astronaut and LFW faces (scikit-image's subset,
   25 x 25 grey, on a flat backdrop to match the training framing) with the mouth / eye band masked and the toggles flipped.
Prints a table and writes benchmarks/results/face_attributes.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.face.data import EVAL_SEED, REGIMES, box_mask, procedural_pool, regime_masks  # noqa: E402


def load_cvae(folder: Path):
    from engine.face.model import from_pretrained

    return from_pretrained(folder)


def fill_batch(model, imgs: np.ndarray, masks: np.ndarray, attrs: np.ndarray, variation: float = 0.0,
               seed: int = 0, strength: float = 0.0) -> np.ndarray:
    """Composites (fill in the hole, original elsewhere), N x 64 x 64 x 3 uint8."""
    import torch

    out = []
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for i in range(0, len(imgs), 128):
            x = torch.from_numpy(imgs[i:i + 128]).permute(0, 3, 1, 2).float() / 255
            m = torch.from_numpy(masks[i:i + 128].astype(np.float32))[:, None]
            a = torch.from_numpy(attrs[i:i + 128].astype(np.float32))
            eps = torch.randn(len(x), model.cfg.z_dim, generator=g)
            y = model.sample(model.encode(x, m), a, eps, variation, strength)
            y = (y * m + x * (1 - m)).permute(0, 2, 3, 1).mul(255).round().clamp(0, 255)
            out.append(y.to(torch.uint8).numpy())
    return np.concatenate(out)


def hole_metrics(pred: np.ndarray, truth: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """Mean over images of (PSNR on hole pixels, SSIM map averaged over hole pixels)."""
    from skimage.metrics import structural_similarity

    ps, ss = [], []
    for p, t, m in zip(pred, truth, masks):
        d = (p.astype(np.float64) - t.astype(np.float64))[m]
        mse = max(float((d**2).mean()), 1e-10)
        ps.append(10 * np.log10(255.0**2 / mse))
        _, smap = structural_similarity(t, p, channel_axis=2, data_range=255, full=True)
        ss.append(float(smap.mean(2)[m].mean()))
    return float(np.mean(ps)), float(np.mean(ss))


def telea_batch(imgs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    from engine.classical.pipeline import opencv_inpaint

    return np.stack([opencv_inpaint(im, m, 5, "telea") for im, m in zip(imgs, masks)])


def attribute_control(model, clf, imgs, labels, mouth, eyes, strengths=(0.0,)) -> dict:
    from engine.face.classifier import predict

    n = len(imgs)
    out = {}
    mouth_m = np.stack([box_mask(64, np.array(b) + [-1, -1, 1, 1]) for b in mouth])
    eye_m = np.stack([box_mask(64, np.array(b) + [-1, -1, 1, 1]) for b in eyes])
    for name, col, masks in (("smile", 0, mouth_m), ("glasses", 1, eye_m)):
        for want in (1.0, 0.0):
            attrs = labels.copy()
            attrs[:, col] = want
            for strength in strengths:
                for variation in (0.0, 1.0):
                    filled = fill_batch(model, imgs, masks, attrs, variation, seed=1, strength=strength)
                    p = predict(clf, filled)[:, col]
                    ok = (p > 0.5) if want else (p <= 0.5)
                    out[f"{name}={int(want)} strength={strength:g} variation={variation:g}"] = float(ok.mean())
    out["n"] = n
    return out


def regime_quality(model, imgs, labels, mouth, eyes) -> dict:
    res = {}
    for r in REGIMES:
        masks = regime_masks(64, r, mouth, eyes, seed=3)
        cvae = fill_batch(model, imgs, masks, labels, 0.0)
        res[r] = dict(zip(("psnr", "ssim"), hole_metrics(cvae, imgs, masks)))
    return res


def telea_quality(imgs, mouth, eyes) -> dict:
    res = {}
    for r in REGIMES:
        masks = regime_masks(64, r, mouth, eyes, seed=3)
        res[r] = dict(zip(("psnr", "ssim"), hole_metrics(telea_batch(imgs, masks), imgs, masks)))
    return res


def latency(folder: Path, reps: int = 30) -> dict:
    import dataclasses

    from engine import registry
    from engine.api import Request
    from engine.face.detect import detect_face
    from engine.runner import run_to_end

    img = cv2.cvtColor(cv2.imread(str(ROOT / "resources" / "samples" / "astronaut.png")), cv2.COLOR_BGR2RGB)
    t = time.perf_counter()
    region = detect_face(img)
    t_detect = time.perf_counter() - t
    spec = registry.get_spec("face-cvae")
    info = dataclasses.replace(spec.info, name="face-cvae-bench", weights=folder)
    registry.register(dataclasses.replace(spec, info=info))
    t = time.perf_counter()
    model = registry.load("face-cvae-bench")
    model.model()
    t_load = time.perf_counter() - t
    mask = np.zeros(img.shape[:2], bool)
    mask[ASTRO_MOUTH[1]:ASTRO_MOUTH[3], ASTRO_MOUTH[0]:ASTRO_MOUTH[2]] = True
    first, flip = [], []
    for i in range(reps):
        req = Request(img, mask.copy(), attributes={"smile": 1.0, "glasses": 0.0}, region=region, seed=i)
        model._enc_key = None  # force the encoder
        t = time.perf_counter()
        run_to_end(model, req)
        first.append(time.perf_counter() - t)
        req = Request(img, mask.copy(), attributes={"smile": 0.0, "glasses": 0.0}, region=region, seed=i)
        t = time.perf_counter()
        run_to_end(model, req)
        flip.append(time.perf_counter() - t)
    return {"detect_ms": t_detect * 1e3, "load_ms": t_load * 1e3, "fill_ms_median": float(np.median(first) * 1e3),
            "toggle_ms_median": float(np.median(flip) * 1e3), "toggle_ms_p90": float(np.percentile(flip, 90) * 1e3),
            "image": "astronaut 512x512", "torch_threads": __import__("torch").get_num_threads()}


def lfw_faces(k: int) -> tuple[np.ndarray, tuple, tuple]:
    """k LFW faces padded to the training framing (64 x 64 RGB), with the mouth box and eye band."""
    import skimage

    a = np.load(os.path.join(os.path.dirname(skimage.__file__), "data", "lfw_subset.npy"))[:k]
    out = []
    for g in a:
        face = cv2.resize((g * 255).astype(np.uint8), (36, 36), interpolation=cv2.INTER_CUBIC)
        edge = float(np.concatenate([face[0], face[-1], face[:, 0], face[:, -1]]).mean())
        face = cv2.copyMakeBorder(face, 17, 11, 14, 14, cv2.BORDER_CONSTANT, value=edge)  # flat backdrop
        out.append(np.repeat(face[..., None], 3, 2))
    to = lambda v, o: int(round(o + v / 25 * 36))  # noqa: E731
    mouth = (to(6.5, 14), to(15.5, 17), to(18.5, 14), to(22, 17))
    eyes = (to(1.5, 14), to(6.5, 17), to(23.5, 14), to(12.5, 17))
    return np.stack(out), mouth, eyes


STRENGTH = 0.5  # the model's default attribute_strength, used for the real-face pictures
ASTRO_MOUTH = (195, 130, 262, 160)  # x0, y0, x1, y1 on the 512 x 512 astronaut (her smile)
ASTRO_EYES = (180, 84, 276, 116)


def _astronaut():
    return cv2.cvtColor(cv2.imread(str(ROOT / "resources" / "samples" / "astronaut.png")), cv2.COLOR_BGR2RGB)


def _face_inpainter(folder: Path):
    from engine import registry
    from engine.face.pipeline import FaceInpainter

    return FaceInpainter(registry.get_info("face-cvae"), folder)


def astronaut_fills(inp) -> dict:
    """Full-size fills of the astronaut through the engine (detected face box, shared crop/paste step)."""
    from engine.api import Request
    from engine.face.detect import detect_face
    from engine.runner import run_to_end

    img = _astronaut()
    region = detect_face(img)
    out = {"input": img, "region": region}
    for key, box in (("smile", ASTRO_MOUTH), ("glasses", ASTRO_EYES)):
        mask = box_mask(512, box)
        out[key + "_mask"] = mask
        for v in (1.0, 0.0):
            attrs = {"smile": 1.0, "glasses": 0.0, key: v}
            out[f"{key}={int(v)}"] = run_to_end(inp, Request(img, mask, attributes=attrs, region=region,
                                                              params={"variation_scale": 0.0})).image
    return out


def lfw_fills(inp, k: int = 100) -> dict:
    faces, mouth, eyes = lfw_faces(k)
    out = {"input": faces, "mouth": mouth, "eyes": eyes}
    for key, box in (("smile", mouth), ("glasses", eyes)):
        m = box_mask(64, box)
        for v in (1.0, 0.0):
            attrs = {"smile": 1.0, "glasses": 0.0, key: v}
            res = []
            for f in faces:
                comp = np.where(m[..., None], inp.fill(f, m, attrs, seed=0, variation=0.0, strength=STRENGTH), f)
                res.append(np.repeat(cv2.cvtColor(comp, cv2.COLOR_RGB2GRAY)[..., None], 3, 2))
            out[f"{key}={int(v)}"] = np.stack(res)
    return out


def real_smile(astro: dict, lfw: dict) -> dict:
    """P(happy) from the FER-2013 expression CNN (engine.face.expression) before and after the mouth fill."""
    from engine.face.detect import detect_faces
    from engine.face.expression import happy_probability, load_expression_model

    fer = load_expression_model()
    x, y, w, h = detect_faces(astro["input"])[0]
    crop = lambda im: im[max(0, y - 10):y + h + 10, max(0, x - 10):x + w + 10]  # noqa: E731  fer's framing
    out = {"astronaut": {k: float(happy_probability(fer, crop(astro[k])[None])[0])
                         for k in ("input", "smile=1", "smile=0")}}
    face = lambda ims: ims[:, 17:53, 14:50]  # noqa: E731  the LFW face inside the padded frame
    lf = {}
    for k in ("input", "smile=1", "smile=0"):
        p = happy_probability(fer, face(lfw[k]))
        lf[k] = {"mean_p_happy": float(p.mean()), "happy_rate": float((p > 0.5).mean())}
    out["lfw"] = lf
    out["lfw"]["n"] = len(lfw["input"])
    return out


def real_grid(astro: dict, lfw: dict, path: Path, k: int = 7) -> dict:
    """Rows: the astronaut (her face box) and k LFW faces; columns: input, mouth hole, smile=1, smile=0,
    eye hole, glasses=1, glasses=0. LFW fills are shown grey (the photos are grey)."""
    x0, y0, x1, y1 = astro["region"]

    def cut(im):
        return cv2.resize(im[max(0, y0):y1, max(0, x0):x1], (64, 64), interpolation=cv2.INTER_AREA)

    def holed(im, m):
        im = im.copy()
        im[m] = (255, 0, 255)
        return im

    rows = [[cut(astro["input"]), cut(holed(astro["input"], astro["smile_mask"])), cut(astro["smile=1"]),
             cut(astro["smile=0"]), cut(holed(astro["input"], astro["glasses_mask"])), cut(astro["glasses=1"]),
             cut(astro["glasses=0"])]]
    mm, em = box_mask(64, lfw["mouth"]), box_mask(64, lfw["eyes"])
    for i in range(k):
        f = lfw["input"][i]
        rows.append([f, holed(f, mm), lfw["smile=1"][i], lfw["smile=0"][i], holed(f, em), lfw["glasses=1"][i],
                     lfw["glasses=0"][i]])
    grid = np.concatenate([np.concatenate([np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=255) for c in r], 1)
                           for r in rows], 0)
    grid = cv2.resize(grid, None, fx=4 / 3, fy=4 / 3, interpolation=cv2.INTER_LINEAR)  # small PNGs
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return {"grid": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), "astronaut_region": list(astro["region"]), "lfw_rows": k,
            "columns": ["input", "mouth hole", "smile=1", "smile=0", "eye hole", "glasses=1", "glasses=0"]}


def procedural_grid(model, imgs, labels, mouth, eyes, path: Path, k: int = 8) -> None:
    """Held-out procedural faces: input, mouth hole, smile 1/0, eye hole, glasses 1/0, big hole, Telea big hole."""
    mm = np.stack([box_mask(64, np.array(b) + [-1, -1, 1, 1]) for b in mouth[:k]])
    em = np.stack([box_mask(64, np.array(b) + [-1, -1, 1, 1]) for b in eyes[:k]])
    big = regime_masks(64, "big", mouth[:k], eyes[:k], seed=3)
    cols = [imgs[:k]]
    for m, col in ((mm, 0), (em, 1)):
        hole = imgs[:k].copy()
        hole[m] = (255, 0, 255)
        cols.append(hole)
        for v in (1.0, 0.0):
            a = labels[:k].copy()
            a[:, col] = v
            cols.append(fill_batch(model, imgs[:k], m, a, 0.0))
    hole = imgs[:k].copy()
    hole[big] = (255, 0, 255)
    cols += [hole, fill_batch(model, imgs[:k], big, labels[:k], 0.0), telea_batch(imgs[:k], big)]
    grid = np.concatenate([np.concatenate([np.pad(c[i], ((1, 1), (1, 1), (0, 0)), constant_values=255)
                                           for c in cols], 1) for i in range(k)], 0)
    grid = cv2.resize(grid, None, fx=4 / 3, fy=4 / 3, interpolation=cv2.INTER_LINEAR)  # small PNGs
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="face cVAE benchmark")
    p.add_argument("--model", default=str(ROOT / "resources" / "models" / "face-cvae"))
    p.add_argument("--n", type=int, default=300, help="held-out faces")
    p.add_argument("--compare", nargs="*", default=[], metavar="NAME=DIR", help="extra models for the regime table")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "face_attributes.json"))
    p.add_argument("--no-grids", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from engine.face import classifier as C

    folder = Path(args.model)
    model = load_cvae(folder)
    clf = C.load() if (C.FOLDER / "model.safetensors").exists() else C.train()
    imgs, labels, mouth, eyes = procedural_pool(args.n, 64, start=EVAL_SEED)
    report: dict = {"model": str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder),
                    "heldout_seeds": [EVAL_SEED, EVAL_SEED + args.n]}
    from engine.face.classifier import predict

    acc = ((predict(clf, imgs) > 0.5) == (labels > 0.5)).mean(0)
    report["classifier_accuracy_on_real_renders"] = {"smile": float(acc[0]), "glasses": float(acc[1])}
    report["attribute_control"] = attribute_control(model, clf, imgs, labels, mouth, eyes, strengths=(0.0, STRENGTH))
    report["quality"] = {"face-cvae": regime_quality(model, imgs, labels, mouth, eyes), "telea": telea_quality(imgs, mouth, eyes)}
    for spec in args.compare:
        name, _, d = spec.partition("=")
        report["quality"][name] = regime_quality(load_cvae(Path(d)), imgs, labels, mouth, eyes)
    report["latency"] = latency(folder)
    if not args.no_grids:
        procedural_grid(model, imgs, labels, mouth, eyes, ROOT / "docs" / "images" / "face_procedural.png")
        inp = _face_inpainter(folder)
        astro, lfw = astronaut_fills(inp), lfw_fills(inp)
        report["real_faces"] = real_grid(astro, lfw, ROOT / "docs" / "images" / "face_real.png")
        report["real_smile"] = real_smile(astro, lfw)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    ac = report["attribute_control"]
    print(f"\nAttribute control on {ac['n']} held-out faces (classifier accuracy on true renders: "
          f"smile {acc[0]:.3f}, glasses {acc[1]:.3f})")
    print(f"{'request':<30}{'success':>9}")
    for k, v in ac.items():
        if k != "n":
            print(f"{k:<30}{v * 100:>8.1f}%")
    print(f"\nHole quality (PSNR dB / SSIM on the hole), {args.n} held-out faces, variation 0")
    print(f"{'model':<14}" + "".join(f"{r:>16}" for r in REGIMES))
    for name, q in report["quality"].items():
        print(f"{name:<14}" + "".join(f"{q[r]['psnr']:>9.2f} /{q[r]['ssim']:.3f}" for r in REGIMES))
    la = report["latency"]
    print(f"\nLatency on the astronaut (512 px, face box): first fill {la['fill_ms_median']:.1f} ms, "
          f"attribute toggle {la['toggle_ms_median']:.1f} ms median ({la['toggle_ms_p90']:.1f} p90), "
          f"detect {la['detect_ms']:.0f} ms, load {la['load_ms']:.0f} ms")
    if "real_smile" in report:
        rs = report["real_smile"]
        print("\nReal faces, mouth masked and refilled: FER-2013 expression CNN, P(happy)")
        a = rs["astronaut"]
        print(f"astronaut: original {a['input']:.2f}, smile=1 {a['smile=1']:.2f}, smile=0 {a['smile=0']:.2f}")
        lf = rs["lfw"]
        print(f"LFW ({lf['n']} faces), mean P(happy) / rate > 0.5: " + ", ".join(
            f"{k} {lf[k]['mean_p_happy']:.2f} / {lf[k]['happy_rate'] * 100:.0f}%" for k in ("input", "smile=1", "smile=0")))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
