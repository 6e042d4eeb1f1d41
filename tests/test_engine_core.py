"""The engine contract: registry, parameter schema, runner (mask enforcement, cancellation, geometry, the one
result object), crop/paste-back."""
import dataclasses

import numpy as np
import pytest

from engine import registry
from engine.api import (Cancelled, CancelToken, Geometry, Inpainter, InpaintError, ModelInfo, ModelOutput, Param,
                        Preview, Request, drive)
from engine.crop import CropPlan, feather_alpha
from engine.registry import ModelSpec
from engine.runner import run_job, run_to_end


def _req(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[20:40, 30:60] = True
    return Request(image=img, mask=mask)


class _Sloppy(Inpainter):
    """Writes garbage everywhere, also outside the mask: the runner must put the original back."""

    INFO = ModelInfo(name="sloppy", title="t", family="test", description="", domain="",
                     params=(Param("n", "int", 3, min=1, max=10),))

    def __init__(self, info: ModelInfo = INFO) -> None:
        super().__init__(info)

    def run(self, request, cancel):
        for i in range(request.params["n"]):
            yield Preview(step=i + 1, total=request.params["n"])
        return ModelOutput(np.full_like(request.image, 7), unet_calls=request.params["n"], chosen={"w": 2.0},
                           stats={"seen": request.image.shape})


def test_registry_lists_classical_models_with_metadata():
    names = [m.name for m in registry.all_models()]
    assert {"telea", "navier-stokes"} <= set(names)
    info = registry.get_info("telea")
    assert info.weights_present and info.domain and info.params[0].name == "radius"
    with pytest.raises(InpaintError, match="unknown model"):
        registry.get_info("nope")


@pytest.mark.parametrize("name", ["telea", "navier-stokes"])
def test_classical_fill_keeps_outside_bit_identical(name):
    req = _req()
    res = run_to_end(registry.load(name), req)
    assert np.array_equal(res.image[~req.mask], req.image[~req.mask])
    assert not np.array_equal(res.image[req.mask], req.image[req.mask])
    assert res.timings["total"] >= 0 and res.model == name


def test_runner_enforces_mask_and_counts_previews():
    req = _req()
    gen = run_job(_Sloppy(), req)
    previews = []
    res = drive(gen, previews.append)
    assert len(previews) == 3 and res.params == {"n": 3}
    assert np.array_equal(res.image[~req.mask], req.image[~req.mask]) and (res.image[req.mask] == 7).all()
    assert (res.unet_calls, res.chosen, res.stats) == (3, {"w": 2.0}, {"seen": (64, 96, 3)}), "run's one result"


def test_the_base_class_gives_the_optional_capabilities_their_defaults():
    model = _Sloppy()
    model.warm_up()  # a no-op, callable on every model
    assert model.geometry({}) == Geometry(context=None)
    with pytest.raises(InpaintError, match="does not learn"):
        next(model.learn_image(_req(), CancelToken()))


class _Shape(Inpainter):
    """Records the working crop it was given and fills it with a constant; previews the whole crop."""

    def __init__(self, geometry: Geometry) -> None:
        super().__init__(ModelInfo(name="shape", title="t", family="test", description="", domain="",
                                   geometry=geometry))
        self.seen: list[Request] = []

    def run(self, request, cancel):
        self.seen.append(request)
        yield Preview(step=1, total=1, image=np.full_like(request.image, 50))
        return ModelOutput(np.full_like(request.image, 200))


@pytest.mark.parametrize("geometry, work", [
    (Geometry(size=32), (32, 32)),  # fixed size: a square around the hole, resized
    (Geometry(context=None), (400, 300)),  # native, the whole image
    (Geometry(context=0.5), (80, 80)),  # native: the hole's box (40 x 40) plus 20 px on each side
    (Geometry(context=None, max_side=100), (100, 75)),  # the whole image, shrunk to a 100 px side
    (Geometry(context=0.5, max_hole=20), (40, 40)),  # shrunk until the hole is 20 px
    (Geometry(context=0.5, multiple=48), (96, 96)),  # padded up to a multiple
])
def test_the_runner_crops_to_the_geometry_and_pastes_only_the_hole(geometry, work):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[100:140, 200:240] = True
    model = _Shape(geometry)
    previews: list[Preview] = []
    res = drive(run_job(model, Request(image=img, mask=mask)), previews.append)
    seen = model.seen[0]
    assert seen.image.shape[1::-1] == work and seen.mask.shape == seen.image.shape[:2] and seen.mask.any()
    assert np.array_equal(res.image[~mask], img[~mask]), "outside the hole: bit-identical"
    assert (res.image[110:130, 210:230] == 200).all(), "deep in the hole: the fill"
    x0, y0, x1, y1 = previews[0].box  # in image pixels, covering the hole, never the padding
    assert x0 <= 200 and y0 <= 100 and x1 >= 240 and y1 >= 140 and x1 <= 400 and y1 <= 300
    assert max(previews[0].image.shape[:2]) <= 384


class _BoxOnly(_Shape):
    """Returns only the hole's box grown by ``margin`` (ModelOutput.box), not the whole working crop."""

    def __init__(self, geometry: Geometry, margin: int, grey: bool = False) -> None:
        super().__init__(geometry)
        self.margin, self.grey = margin, grey

    def run(self, request, cancel):
        yield Preview(step=1, total=1)
        ys, xs = np.nonzero(request.mask)
        h, w = request.mask.shape
        m = self.margin
        box = (max(0, xs.min() - m), max(0, ys.min() - m), min(w, xs.max() + 1 + m), min(h, ys.max() + 1 + m))
        shape = (box[3] - box[1], box[2] - box[0]) + (() if self.grey else (3,))
        return ModelOutput(np.full(shape, 200, np.uint8), box=box)


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("geometry", [Geometry(context=None), Geometry(context=0.5), Geometry(size=32),
                                      Geometry(context=None, max_side=100)])
def test_a_model_may_return_only_the_box_holding_the_hole(geometry, grey):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), np.uint8)
    mask[100:140, 200:240] = 255
    mask[100:140, 238:240] = 128  # a soft edge: blended, as with a whole crop
    whole = run_to_end(_Shape(geometry), Request(image=img, mask=mask))
    boxed = run_to_end(_BoxOnly(geometry, margin=1, grey=grey), Request(image=img, mask=mask))
    if geometry.size is None and not geometry.max_side:  # unresized: the very same paste
        assert np.array_equal(whole.image, boxed.image)
    else:  # resized as a whole, the crop as given around the box: the hole's edge resamples its neighbours
        assert np.array_equal(boxed.image[mask == 0], img[mask == 0])
        assert (boxed.image[110:130, 210:230] == 200).all()
    with pytest.raises(InpaintError, match=r"box \(\d+, \d+, \d+, \d+\) .* must hold the whole hole"):
        run_to_end(_BoxOnly(geometry, margin=0, grey=grey), Request(image=img, mask=mask))


def test_a_region_outside_the_hole_is_a_clear_error():
    mask = np.zeros((100, 100), bool)
    mask[80:90, 80:90] = True
    req = Request(image=np.zeros((100, 100, 3), np.uint8), mask=mask, region=(0, 0, 40, 40))
    with pytest.raises(InpaintError, match="outside the working box"):
        run_to_end(_Shape(Geometry(size=16)), req)


def test_runner_cancels_between_steps():
    cancel = CancelToken()
    gen = run_job(_Sloppy(), _req(), cancel)
    next(gen)
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(gen)


@pytest.mark.parametrize("given, message", [
    ({"n": "abc"}, "expected a whole number"),
    ({"n": 99}, "outside"),
    ({"zz": 1}, "no parameter 'zz'"),
])
def test_bad_parameters_are_clear_errors(given, message):
    req = _req()
    req.params = given
    with pytest.raises(InpaintError, match=message):
        run_to_end(_Sloppy(), req)


def test_empty_mask_and_size_mismatch():
    req = _req()
    req.mask[:] = False
    with pytest.raises(InpaintError, match="mask is empty"):
        run_to_end(_Sloppy(), req)
    req = _req()
    req.mask = req.mask[:10]
    with pytest.raises(InpaintError, match="mask is"):
        run_to_end(_Sloppy(), req)


def test_param_parse_kinds():
    assert Param("b", "bool", False).parse("yes") is True
    assert Param("c", "choice", "a", choices=("a", "b")).parse("b") == "b"
    with pytest.raises(InpaintError, match="one of a, b"):
        Param("c", "choice", "a", choices=("a", "b")).parse("z")


def test_runtime_registration_and_replacement():
    registry.register(ModelSpec(_Sloppy.INFO, factory="tests.test_engine_core:_Sloppy"))
    try:
        assert registry.load("sloppy").info.name == "sloppy"
        assert "sloppy" in [m.name for m in registry.all_models()]
    finally:
        registry.unregister("sloppy")
    assert "sloppy" not in [m.name for m in registry.all_models()]


def test_crop_plan_square_box_around_hole():
    mask = np.zeros((300, 400), bool)
    mask[100:140, 200:220] = True
    plan = CropPlan.around_mask(mask, 32, context=0.5)
    x0, y0, x1, y1 = plan.box
    assert x1 - x0 == y1 - y0 == 80 and x0 <= 200 and x1 >= 220 and y0 <= 100 and y1 >= 140
    assert plan.crop_image(np.zeros((300, 400, 3), np.uint8)).shape == (32, 32, 3)
    small = plan.crop_mask(mask)
    assert small.shape == (32, 32) and small.any() and not small.all()


@pytest.mark.parametrize("work", [16, 28, 64, 97])
def test_no_known_working_pixel_carries_a_hole_pixel(work):
    """Shrinking (area) or growing (cubic): scribbling in the hole changes only working pixels marked as hole."""
    rng = np.random.default_rng(work)
    img = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    mask = np.zeros((60, 70), bool)
    mask[25:38, 30:41] = True
    mask[40, 12:20] = True  # a one-pixel stroke
    other = img.copy()
    other[mask] = 255 - other[mask]
    plan = CropPlan.around_mask(mask, work, context=0.6)
    hole = plan.crop_mask(mask)
    a, b = plan.crop_image(img), plan.crop_image(other)
    assert np.array_equal(a[~hole], b[~hole]) and not np.array_equal(a, b)
    assert hole.mean() < 0.8, "and the working hole is not blown up beyond use"


def test_context_is_capped_in_pixels_so_a_large_hole_in_a_large_photo_stays_bounded():
    mask = np.zeros((4000, 6000), bool)
    mask[1600:2400, 2500:3500] = True  # 1000 x 800
    free = CropPlan.plan(Geometry(context=2.0, min_context=64), mask).box
    capped = CropPlan.plan(Geometry(context=2.0, min_context=64, max_context=1024), mask).box
    assert free == (500, 0, 5500, 4000)
    assert capped == (2500 - 1024, 1600 - 1024, 3500 + 1024, 2400 + 1024)
    small = np.zeros((4000, 6000), bool)
    small[1950:2050, 2950:3050] = True
    assert (CropPlan.plan(Geometry(context=2.0, min_context=64), small).box
            == CropPlan.plan(Geometry(context=2.0, min_context=64, max_context=1024), small).box), "small: as before"
    sq = CropPlan.plan(Geometry(size=64, context=2.0, max_context=100), mask).box
    assert sq[2] - sq[0] == 1000 + 200


def test_crop_plan_clamps_to_image_and_honours_region():
    mask = np.zeros((50, 200), bool)
    mask[0:50, 0:10] = True
    x0, y0, x1, y1 = CropPlan.around_mask(mask, 16).box
    assert (x0, y0) == (0, 0) and y1 == 50 and x1 <= 200
    assert CropPlan.around_mask(mask, 16, region=(5, 5, 45, 45)).box == (5, 5, 45, 45)


def test_paste_changes_only_the_hole_and_feathers_inward():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)
    mask = np.zeros((120, 120), bool)
    mask[40:80, 40:80] = True
    plan = CropPlan.around_mask(mask, 16)
    out = plan.paste(img, np.full((16, 16, 3), 200, np.uint8), mask)
    assert np.array_equal(out[~mask], img[~mask])
    assert (out[55:65, 55:65] == 200).all()  # deep inside: pure fill
    alpha = feather_alpha(mask, 4)
    assert alpha[40, 60] < alpha[42, 60] < alpha[50, 60] == 1.0 and alpha[39, 60] == 0


def test_a_soft_mask_blends_the_fill_by_alpha():
    """Grey-level masks: alpha 0 keeps the original bit-for-bit, 255 takes the fill bit-for-bit, between mixes."""
    req = _req()
    alpha = np.zeros(req.mask.shape, np.uint8)
    alpha[20:40, 30:40] = 255
    alpha[20:40, 40:50] = 128
    alpha[20:40, 50:60] = 1
    req.mask = alpha
    model = _Shape(Geometry(context=0.5))
    res = run_to_end(model, req)
    assert model.seen[0].mask.dtype == np.bool_ and model.seen[0].mask.sum() == 20 * 30, "the model sees alpha > 0"
    orig = req.image.astype(int)
    assert np.array_equal(res.image[alpha == 0], req.image[alpha == 0])
    assert (res.image[alpha == 255] == 200).all()
    half = res.image[alpha == 128].astype(int)
    assert np.abs(half - np.rint(orig[alpha == 128] * (127 / 255) + 200 * (128 / 255))).max() <= 1
    faint = res.image[alpha == 1].astype(int)
    assert np.abs(faint - orig[alpha == 1]).max() <= 1


def test_grey_mask_files_keep_their_levels(tmp_path):
    from engine.imageio import load_mask, save_mask

    alpha = np.zeros((20, 30), np.uint8)
    alpha[5:15, 5:10] = 255
    alpha[5:15, 10:15] = 100
    alpha[5:15, 15:20] = 4  # JPEG-like noise near black
    alpha[5:15, 20:25] = 252  # ... and near white
    save_mask(tmp_path / "m.png", alpha)
    back = load_mask(tmp_path / "m.png", (20, 30))
    assert back.dtype == np.uint8 and back[6, 12] == 100 and back[6, 6] == 255
    assert back[6, 17] == 0 and back[6, 22] == 255, "levels near black / white snap to them"
    assert load_mask(tmp_path / "m.png", (20, 30), "sketch").dtype == np.bool_


@pytest.mark.parametrize("name", ["telea", "navier-stokes"])
def test_classical_fills_on_a_crop_equal_the_whole_image_fill(name):
    """Their crop (the hole's box + 2 radius + 2 px) reads everything the whole-image fill reads."""
    from engine.classical.pipeline import opencv_inpaint

    rng = np.random.default_rng(3)
    img = np.ascontiguousarray(np.clip(rng.normal(128, 40, (300, 400, 3)), 0, 255).astype(np.uint8))
    mask = np.zeros((300, 400), bool)
    mask[140:160, 180:260] = True
    mask[100:104, 50:120] = True
    model = registry.load(name)
    res = run_to_end(model, Request(img, mask, params={"radius": 7}))
    whole = opencv_inpaint(img, mask, 7, "telea" if name == "telea" else "ns")
    assert np.array_equal(res.image, whole)
    assert model.geometry({"radius": 7}).min_context == 16


def test_int8_rows_keep_a_network_within_a_quarter_percent_and_quarter_the_bytes(tmp_path):
    import torch

    from engine.weights import int8_folder, load_weights, save_pretrained

    @dataclasses.dataclass
    class Cfg:
        width: int = 300

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(500, 300), torch.nn.Linear(300, 300), torch.nn.LayerNorm(300))
    save_pretrained(tmp_path / "fp32", net, Cfg())
    int8_folder(tmp_path / "fp32", tmp_path / "int8")
    sizes = [(tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", "int8")]
    assert sizes[1] < sizes[0] * 0.3
    back = torch.nn.Sequential(torch.nn.Embedding(500, 300), torch.nn.Linear(300, 300), torch.nn.LayerNorm(300))
    load_weights(back, tmp_path / "int8" / "model.safetensors")
    for (k, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert b.dtype == torch.float32
        err = (a - b).abs().max() / a.abs().max().clamp(min=1e-12)
        assert err <= 0.5 / 127 + 1e-6, k  # half a step of the row's absmax / 127
    ln = net[2].weight
    assert torch.equal(back[2].weight, ln), "small tensors stay exact"
