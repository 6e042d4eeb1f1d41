"""Token models through the engine: registry entries, the runner's invariants, previews, seeds, cancellation, CLI.

Tiny randomly initialised tokenizers and transformers are built here and saved in the shipped format, so these
tests need no trained weights.
"""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import registry
from engine.api import CancelToken, Cancelled, Request
from engine.runner import run_job, run_to_end
from engine.token.fsq import Tokenizer, TokenizerConfig, save_tokenizer, token_hole
from engine.token.transformer import TransformerConfig, build
from engine.weights import save_pretrained

NAMES = ("token-mnist", "token-mnist-ar", "token-face", "token-face-ar")


def _make(folder, variant, tok_cfg, name, pixels: bool):
    torch.manual_seed(1)
    tok_dir = folder / f"token-fsq-{name}"
    if not tok_dir.exists():
        save_tokenizer(tok_dir, Tokenizer(tok_cfg))
    cfg = TransformerConfig(variant=variant, vocab=tok_cfg.codebook_size, grid=tok_cfg.grid, width=32, layers=2,
                            decoder_layers=1, heads=2, tokenizer=tok_dir.name,
                            pixels=tok_cfg.known_pixel_size if pixels else 0)
    out = folder / f"{name}-{variant}"
    save_pretrained(out, build(cfg), cfg)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """name -> registered tiny model, for the four shipped entries."""
    root = tmp_path_factory.mktemp("token-models")
    grey = TokenizerConfig(channels=1, size=28, patch=4, levels=(4, 3, 3), enc_hidden=16, dec_grid=16, dec_pixel=8)
    rgb = TokenizerConfig(channels=3, size=64, patch=8, levels=(4, 3, 3), enc_hidden=16, dec_grid=16, dec_pixel=8)
    made = {}
    # the digit models read the known pixels of the hole's edge tokens, the face models ids only (as shipped)
    for name, variant, cfg, dom, pixels in (("token-mnist", "bidirectional", grey, "mnist", True),
                                            ("token-mnist-ar", "autoregressive", grey, "mnist", True),
                                            ("token-face", "bidirectional", rgb, "face", False),
                                            ("token-face-ar", "autoregressive", rgb, "face", False)):
        folder = _make(root, variant, cfg, dom, pixels)
        spec = registry.get_spec(name)
        info = dataclasses.replace(spec.info, name=f"{name}-tiny-test", weights=folder)
        registry.register(dataclasses.replace(spec, info=info))
        made[name] = registry.load(info.name)
    yield made
    for name in NAMES:
        registry.unregister(f"{name}-tiny-test")


def test_registry_entries_are_cheap_and_honest():
    code = "import sys, engine.token; assert 'torch' not in sys.modules, 'the family imports torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[1]))
    infos = {i.name: i for i in registry.all_models()}
    for name in NAMES:
        info = infos[name]
        assert info.family == "token" and info.on_photo and info.weights.name == name
    assert infos["token-mnist"].category == "digits" and infos["token-mnist"].grey
    assert infos["token-face"].category == "faces" and infos["token-face"].uses_region
    assert "cartoon" in infos["token-face"].on_photo and "digit" in infos["token-mnist"].on_photo
    assert [p.name for p in infos["token-mnist"].params] == ["iterations", "temperature", "top_k", "top_p",
                                                             "confidence_noise"]
    assert infos["token-mnist"].param("iterations").default == 12
    assert [p.name for p in infos["token-mnist-ar"].params] == ["temperature", "top_k", "top_p"]
    assert infos["token-face-ar"].param("top_p").default == 0.9 and infos["token-face"].param("top_p").default == 1
    assert registry.get_spec("token-face").region_detector
    assert infos["token-face"].param("grain").default is True
    assert "grain" in [p.name for p in infos["token-face-ar"].params]


def test_grain_matching_measures_the_noise_and_touches_only_the_hole():
    from engine.token.pipeline import match_grain, noise_sigma

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    clean = np.stack([xx * 2, yy * 3, xx + yy], -1).astype(np.float32) + 40
    clean[20:40, 10:50] += 60  # an edge the estimate must ignore
    for sigma in (0.0, 2.0, 5.0):
        img = np.clip(np.rint(clean + rng.standard_normal(clean.shape) * sigma), 0, 255).astype(np.uint8)
        hole = np.zeros((64, 64), bool)
        hole[30:50, 5:30] = True
        est = noise_sigma(img, ~hole)
        assert np.allclose(est, sigma, atol=0.6), (sigma, est)
        flat = np.full_like(img, 128)
        out = match_grain(flat, img, hole, seed=3)
        assert np.array_equal(out[~hole], flat[~hole])
        assert abs(float(out[hole].astype(float).std()) - sigma) < 0.8
        assert np.array_equal(out, match_grain(flat, img, hole, seed=3))


def _digit_request(seed=0, **params):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    mask = np.zeros((40, 52), bool)
    mask[12:25, 18:33] = True
    return Request(image=img, mask=mask, seed=seed, params=params)


@pytest.mark.parametrize("name", NAMES)
def test_outside_the_mask_bit_identical_and_seeded(tiny, name):
    model = tiny[name]
    if "face" in name:
        rng = np.random.default_rng(4)
        img = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
        mask = np.zeros((120, 100), bool)
        mask[50:70, 30:62] = True
        req = lambda s: Request(img, mask, seed=s, region=(10, 20, 90, 100))  # noqa: E731
    else:
        req = _digit_request
    a, b, c = (run_to_end(model, req(s)).image for s in (5, 5, 6))
    r = req(5)
    assert np.array_equal(a[~r.mask], r.image[~r.mask])
    assert np.array_equal(a, b), "a seed gives the same fill"
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_the_fill_never_depends_on_what_the_hole_held(tiny, name):
    """No token, known-pixel input or decoder guide reads a hole pixel: scribbling inside the mask changes nothing.
    (At the model's own resolution: a resized crop's paste feathers its seam over one working pixel.)"""
    model = tiny[name]
    size = 64 if "face" in name else 28
    img = np.random.default_rng(4).integers(0, 256, (size + 20, size + 10, 3), dtype=np.uint8)
    mask = np.zeros(img.shape[:2], bool)
    mask[15:15 + size // 2, 12:12 + size // 3] = True
    other = img.copy()
    other[mask] = 255 - other[mask]
    region = (5, 10, 5 + size, 10 + size)
    a, b = (run_to_end(model, Request(im, mask, seed=2, region=region)).image for im in (img, other))
    assert np.array_equal(a, b)


class Spy:
    """Counts the transformer's forward calls (and records the first input) on the cached network."""

    def __init__(self, monkeypatch, model, cancel_at=None, token=None):
        net, _ = model.models(torch.device("cpu"))
        self.calls, self.first, self.after_cancel = 0, None, 0
        self.token = token
        attr = "decode" if net.config.variant == "autoregressive" else "forward"
        inner = getattr(net, attr)

        def wrapped(*args, **kw):
            if self.token is not None and self.token.cancelled:
                self.after_cancel += 1
            self.calls += 1
            if self.first is None:
                self.first = args[0].clone()
            if cancel_at is not None and self.calls == cancel_at:
                self.token.cancel()
            return inner(*args, **kw)

        monkeypatch.setattr(net, attr, wrapped)
        self.net = net


def test_every_token_touching_the_hole_is_masked_and_previews_fill_it(tiny, monkeypatch):
    model = tiny["token-mnist"]
    spy = Spy(monkeypatch, model)
    req = _digit_request(iterations=5)
    previews = []
    gen = run_job(model, req)
    while True:
        try:
            previews.append(next(gen))
        except StopIteration:
            break
    from engine.crop import CropPlan

    plan = CropPlan.plan(model.geometry({}), req.mask)
    th = token_hole(torch.from_numpy(plan.crop_mask(req.mask)).float()[None], 4).flatten()
    first = spy.first[0]
    assert torch.equal(first == spy.net.config.mask_id, th), "MASK exactly on the tokens touching the hole"
    assert len(previews) == spy.calls == 5 and [p.step for p in previews] == [1, 2, 3, 4, 5]
    opened = [int(p.message.split(": ")[1].split()[0]) for p in previews]
    assert opened == sorted(opened, reverse=True) and opened[-1] == 0 and opened[0] > 0
    assert all(p.image is not None for p in previews)


def test_autoregressive_preview_per_finished_row(tiny):
    model = tiny["token-mnist-ar"]
    req = _digit_request()
    previews = []
    gen = run_job(model, req)
    while True:
        try:
            previews.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    from engine.crop import CropPlan

    plan = CropPlan.plan(model.geometry({}), req.mask)
    th = token_hole(torch.from_numpy(plan.crop_mask(req.mask)).float()[None], 4)[0]
    rows = int(th.any(1).sum())
    assert len(previews) == rows and previews[-1].step == previews[-1].total == rows
    assert result.unet_calls == int(th.sum()), "one decoder step per hole token"


def test_cancel_between_passes_stops_at_once(tiny, monkeypatch):
    model = tiny["token-mnist"]
    token = CancelToken()
    spy = Spy(monkeypatch, model, token=token)
    gen = run_job(model, _digit_request(iterations=8), token)
    next(gen)
    token.cancel()
    with pytest.raises(Cancelled):
        next(gen)
    assert spy.calls == 1 and spy.after_cancel == 0, "no network call after the cancel"


@pytest.mark.parametrize("name", ["token-mnist", "token-mnist-ar"])
def test_cancel_inside_a_pass_or_row_stops_within_one_call(tiny, monkeypatch, name):
    """A cancel set during a network call (mid-row for the autoregressive model): at most that call finishes."""
    model = tiny[name]
    token = CancelToken()
    spy = Spy(monkeypatch, model, cancel_at=2, token=token)
    with pytest.raises(Cancelled):
        run_to_end(model, _digit_request(), token)
    assert spy.calls == 2 and spy.after_cancel == 0


def test_grey_model_returns_grey_fill(tiny):
    img = np.random.default_rng(5).integers(0, 256, (28, 28, 3), dtype=np.uint8)  # colour in, at working size
    mask = np.zeros((28, 28), bool)
    mask[7:21, 7:21] = True
    res = run_to_end(tiny["token-mnist"], Request(img, mask))
    fill = res.image[mask]
    assert (fill == fill[:, :1]).all()


def test_missing_tokenizer_is_one_clear_error(tmp_path):
    from engine.api import InpaintError
    from engine.token.pipeline import load_models

    cfg = TransformerConfig(vocab=36, grid=7, width=32, layers=2, heads=2, tokenizer="no-such-tokenizer")
    save_pretrained(tmp_path / "m", build(cfg), cfg)
    with pytest.raises(InpaintError, match="tokenizer"):
        load_models(tmp_path / "m", torch.device("cpu"))


def test_cli_files_and_folders(tiny, tmp_path, capsys):
    from engine.cli import main as cli
    from engine.imageio import load_image, save_image, save_mask

    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a.png", "b.png"):
        img = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
        m = np.zeros((28, 28), bool)
        m[14:, :] = True
        save_image(tmp_path / "in" / name, img)
        save_mask(tmp_path / "masks" / name, m)
    code = cli(["inpaint", "--model", "token-mnist-tiny-test", "--image", str(tmp_path / "in" / "a.png"), "--mask",
                str(tmp_path / "masks" / "a.png"), "--out", str(tmp_path / "a_out.png"), "--param", "iterations=4",
                "--seed", "2"])
    assert code == 0, capsys.readouterr().err
    src, out = load_image(tmp_path / "in" / "a.png").rgb, load_image(tmp_path / "a_out.png").rgb
    assert np.array_equal(out[:14], src[:14]) and not np.array_equal(out[14:], src[14:])
    code = cli(["inpaint", "--model", "token-mnist-ar-tiny-test", "--image", str(tmp_path / "in"), "--mask",
                str(tmp_path / "masks"), "--out", str(tmp_path / "out"), "--param", "temperature=0.5"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


@pytest.mark.parametrize("name", ["token-mnist", "token-mnist-ar"])
def test_top_p_reaches_the_decoder(tiny, name, monkeypatch):
    import engine.token.sampling as sampling

    seen = []
    draw = sampling.sample_ids
    monkeypatch.setattr(sampling, "sample_ids", lambda *a: seen.append(a[4]) or draw(*a))
    run_to_end(tiny[name], _digit_request(1, top_p=0.35))
    assert seen and set(seen) == {0.35}, "every draw of the fill uses the request's top-p"
    seen.clear()
    run_to_end(tiny[name], _digit_request(1))
    assert set(seen) == {1.0}, "the registered default otherwise"
