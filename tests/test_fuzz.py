"""Property-based fuzzing of everything a user can hand the program (issue 21): image files (sizes, modes, bit depths,
formats, EXIF orientation, truncation, flipped and random bytes), parameter and attribute values for every model's
schema, requests through ``engine.runner`` and whole command lines through the CLI.

Invariants: a result or one ``InpaintError`` (one ``error:`` line on the command line), never another exception;
pixels outside the mask bit-identical to the input; no file under a final name unless it is complete, and no
temporary file left behind.

Only instant models run (telea, navier-stokes); every other model's schema and geometry go through the runner on a
stand-in that fills with a constant, so its checks and crop / paste-back are fuzzed without loading weights.

CI runs a fixed, small budget (derandomized: the same examples every run, about a minute on 2 CPU cores). A longer
run, new examples each time:

    INPAINT_STUDIO_FUZZ=2000 python -m pytest -q -p no:cacheprovider tests/test_fuzz.py    # examples per test

(``INPAINT_STUDIO_FUZZ_SEED=N`` fixes that run's seed too.) A failure prints the smallest example found.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")  # a test dependency (pyproject's "test" extra)
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from engine import registry  # noqa: E402
from engine.api import Inpainter, InpaintError, ModelOutput, Preview, Request  # noqa: E402
from engine.imageio import ImageError, load_image, load_mask, probe_image, save_image  # noqa: E402
from engine.runner import run_to_end  # noqa: E402

LONG = int(os.environ.get("INPAINT_STUDIO_FUZZ", "0") or 0)


def budget(ci: int):
    """CI: ``ci`` derandomized examples (the same every run); a long run: INPAINT_STUDIO_FUZZ examples, random."""
    seed = os.environ.get("INPAINT_STUDIO_FUZZ_SEED")
    s = settings(max_examples=LONG or ci, derandomize=not LONG, deadline=None, database=None, print_blob=bool(LONG),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    if LONG and seed:
        return lambda f: hypothesis.seed(int(seed))(s(f))
    return s


INSTANT = ("telea", "navier-stokes")

# ---- strategies ------------------------------------------------------------------------------------------------
JUNK = st.one_of(
    st.text(max_size=12), st.sampled_from(["nan", "-nan", "inf", "-inf", "1e400", "2.7", "-1", "0", "1", "3.0",
                                           "1e3", "0x10", "true", "off", "", " ", "1" * 400, "\x00", "~"]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2**70, max_value=2**70), st.booleans(),
    st.none(), st.lists(st.integers(), max_size=2), st.just(np.float32("nan")), st.just(np.int64(3)))


def rarely(good, bad, one_in_: int = 8):
    """``good`` most of the time, ``bad`` about one time in ``one_in``: every check is reached, and so is the fill."""
    return one_in(one_in_).flatmap(lambda junk: bad if junk else good)


def one_in(n: int):
    """True about one time in ``n`` (st.integers draws its bounds, 0 above all, far more often than that)."""
    return st.sampled_from(range(n)).map(lambda i: i == 0)


def side(lo: int = 2, hi: int = 48):
    return rarely(st.integers(lo, hi), st.just(1), 25)


def value_for(param):
    """Mostly values inside the schema (so jobs run), as they are or as text, now and then junk."""
    if param.kind == "int":
        lo, hi = int(param.min if param.min is not None else -100), int(param.max if param.max is not None else 100)
        good = st.integers(lo, hi)
    elif param.kind == "float":
        lo, hi = param.min if param.min is not None else -1e3, param.max if param.max is not None else 1e3
        good = st.floats(lo, hi, allow_nan=False)
    elif param.kind == "bool":
        good = st.booleans()
    elif param.kind == "choice":
        good = st.sampled_from(param.choices)
    else:
        good = st.just(param.default)
    return rarely(st.one_of(good, good.map(str)), JUNK, 6)


@st.composite
def params_for(draw, info, junk_names=True):
    given = {}
    for p in info.params:
        if draw(st.booleans()):
            given[p.name] = draw(value_for(p))
    if junk_names and draw(one_in(40)):
        given[draw(st.text(min_size=1, max_size=6))] = "1"
    return given


@st.composite
def attributes_for(draw, info):
    out = {}
    for a in info.attributes:
        if draw(st.booleans()):
            out[a.name] = draw(rarely(st.one_of(st.floats(0, 1), st.sampled_from([0, 1, "1", "yes"])), JUNK, 6))
    return out


MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK")
FORMATS = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "tiff": ".tif", "bmp": ".bmp", "webp": ".webp"}


@st.composite
def image_bytes(draw, max_side=40):
    """(bytes, suffix): an image in some mode / format / orientation, maybe damaged; now and then random bytes."""
    if draw(one_in(12)):
        head = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"II*\x00", b"BM"]))
        return head + draw(st.binary(max_size=300)), draw(st.sampled_from(list(FORMATS.values())))
    w, h = draw(side(2, max_side)), draw(side(2, max_side))
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(list(FORMATS)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode in ("I;16", "I", "F"):
        kind = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        arr = (rng.random((h, w)) * {"I;16": 65535, "I": 70000, "F": 2.0}[mode]).astype(kind)
        im = Image.fromarray(arr, mode) if mode != "I;16" else Image.fromarray(arr)
    else:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    kwargs = {}
    orientation = draw(st.sampled_from(range(10)))  # 0: no EXIF; 9: not an orientation
    if orientation and fmt in ("jpeg", "png", "tiff", "webp"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    if len(im.getbands()) > 1 and draw(one_in(6)) and fmt in ("gif", "tiff"):
        kwargs.update(save_all=True, append_images=[im.transpose(Image.Transpose.ROTATE_180)])
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt.upper(), **kwargs)
    except (OSError, ValueError, KeyError, TypeError):  # a mode the format cannot hold: save it as PNG instead
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
        fmt = "png"
    data = buf.getvalue()
    damage = draw(st.sampled_from(range(6)))  # 0: none, 1: truncated, 2: bytes flipped, else none
    if damage == 1:
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == 2:
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        data = bytes(b)
    suffix = FORMATS[fmt] if not draw(one_in(8)) else draw(st.sampled_from(list(FORMATS.values())))
    return data, suffix


@st.composite
def masks(draw, h, w):
    kind = draw(rarely(st.sampled_from(["box", "box", "box", "soft", "noise"]), st.sampled_from(["empty", "full"]),
                       6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "empty":
        return np.zeros((h, w), bool)
    if kind == "full":
        return np.ones((h, w), bool)
    if kind == "noise":
        return rng.random((h, w)) < 0.3
    x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
    x1, y1 = draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))
    m = np.zeros((h, w), np.uint8 if kind == "soft" else bool)
    m[y0:y1, x0:x1] = rng.integers(1, 256, (y1 - y0, x1 - x0)) if kind == "soft" else True
    return m


@st.composite
def requests(draw, info):
    h, w = draw(side()), draw(side())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = draw(masks(h, w))
    if draw(one_in(16)):  # the wrong array: shape, dtype
        image = draw(st.sampled_from([image[..., 0], image.astype(np.float32), image[:, :, :2]]))
    if draw(one_in(16)):
        mask = draw(st.sampled_from([mask.astype(np.float64), mask[:-1] if h > 1 else mask[:, :0]]))
    sketch = draw(rarely(st.none(), masks(h, w).map(lambda m: m.astype(bool)), 4))
    box = st.tuples(st.integers(-20, 30), st.integers(-20, 30)).flatmap(
        lambda xy: st.tuples(st.just(xy[0]), st.just(xy[1]), st.integers(xy[0] + 1, 70), st.integers(xy[1] + 1, 70)))
    junk_box = st.one_of(st.tuples(*[st.integers(-20, 70)] * 4), st.tuples(st.floats(), st.integers(), st.integers()))
    region = draw(rarely(st.none(), rarely(box, junk_box, 3), 4))
    seed = draw(rarely(st.integers(0, 2**31 - 1), st.integers(-2**40, 2**70), 10))
    return Request(image=image, mask=mask, sketch=sketch, attributes=draw(attributes_for(info)), seed=seed,
                   params=draw(params_for(info)), region=region, prompt=draw(st.sampled_from(["", "a cat"])))


def _gist(exc: Exception) -> str:
    """The kind of refusal, for the statistics (``--hypothesis-show-statistics``): its words, no paths or values."""
    words = [w for w in str(exc).split() if w.isalpha()][:4]
    return " ".join(words)


def _outside_identical(result_image, image, mask):
    keep = (mask == 0) if mask.dtype != np.bool_ else ~mask
    return np.array_equal(result_image[keep], image[keep])


# ---- parameters and attributes of every model ------------------------------------------------------------------
ALL = registry.all_models()


@budget(300)
@given(st.data())
def test_every_schema_parses_to_its_type_or_refuses(data):
    info = data.draw(st.sampled_from(ALL))
    given_params, given_attrs = data.draw(params_for(info)), data.draw(attributes_for(info))
    try:
        params = info.resolve_params(given_params)
    except InpaintError:
        params = None
    if params is not None:
        for p in info.params:
            v = params[p.name]
            if p.kind == "int":
                assert type(v) is int and (p.min is None or v >= p.min) and (p.max is None or v <= p.max)
            elif p.kind == "float":
                assert type(v) is float and np.isfinite(v) and (p.min is None or v >= p.min) \
                    and (p.max is None or v <= p.max)
            elif p.kind == "bool":
                assert type(v) is bool
            elif p.kind == "choice":
                assert v in p.choices
            else:
                assert isinstance(v, str) and "\x00" not in v
    try:
        attrs = info.resolve_attributes(given_attrs)
    except InpaintError:
        return
    assert all(type(v) is float and a.min <= v <= a.max for a in info.attributes for v in [attrs[a.name]])


# ---- the runner --------------------------------------------------------------------------------------------------
@budget(150)
@given(st.data())
def test_instant_models_give_a_result_or_one_inpaint_error(data):
    name = data.draw(st.sampled_from(INSTANT))
    req = data.draw(requests(registry.get_info(name)))
    try:
        res = run_to_end(registry.load(name), req)
    except InpaintError as exc:
        assert str(exc) and "\n" not in str(exc)
        event(f"refused: {_gist(exc)}")
        return
    event("filled")
    assert res.image.shape == req.image.shape and res.image.dtype == np.uint8
    assert _outside_identical(res.image, req.image, req.mask)


class _StandIn(Inpainter):
    """A model's schema and geometry with a constant fill: the runner's checks and crop / paste-back, no weights."""

    def run(self, request, cancel):
        assert request.image.dtype == np.uint8 and request.image.shape[:2] == request.mask.shape
        yield Preview(step=1, total=1)
        return ModelOutput(np.full(request.image.shape, 77, np.uint8))


@budget(200)
@given(st.data())
def test_every_models_schema_and_geometry_through_the_runner(data):
    info = data.draw(st.sampled_from(ALL))
    req = data.draw(requests(info))
    try:
        res = run_to_end(_StandIn(info), req)
    except InpaintError as exc:
        assert str(exc) and "\n" not in str(exc)
        event(f"refused: {_gist(exc)}")
        return
    event("filled")
    assert res.image.shape == req.image.shape and _outside_identical(res.image, req.image, req.mask)


# ---- image files -------------------------------------------------------------------------------------------------
@budget(250)
@given(image_bytes())
def test_any_file_loads_as_rgb_or_is_one_image_error(case):
    data, suffix = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x{suffix}"
        path.write_bytes(data)
        try:
            probe = probe_image(path)
        except ImageError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            probe = None
        try:
            loaded = load_image(path)
        except ImageError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            event(f"refused: {_gist(exc)}")
            return
        event(f"loaded{' with a warning' if loaded.warnings else ''}")
        h, w = loaded.rgb.shape[:2]
        assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (h, w, 3) and loaded.rgb.flags.c_contiguous
        assert loaded.alpha is None or (loaded.alpha.shape == (h, w) and loaded.alpha.dtype == np.uint8)
        assert all(isinstance(line, str) and "\n" not in line for line in loaded.warnings)
        if probe is not None:
            assert sorted(probe.size) == sorted((w, h))
        mask = load_mask(path, (h, w))
        assert mask.dtype == np.uint8 and mask.shape == (h, w)
        out = save_image(Path(d) / "out.png", loaded.rgb, loaded.alpha, metadata={"source": path.name})
        again = load_image(out)
        assert np.array_equal(again.rgb, loaded.rgb)
        assert sorted(p.name for p in Path(d).iterdir()) == sorted([path.name, "out.png"])


# ---- the command line ------------------------------------------------------------------------------------------
def _cli(argv):
    import contextlib

    from engine.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _check_lines(code, err):
    assert code in (0, 1, 2), err
    lines = err.splitlines()
    assert "Traceback" not in err, err
    assert all(line.startswith(("error: ", "warning: ", "batch done: ")) for line in lines), err
    return [line for line in lines if line.startswith("error: ")]


def _no_leftovers(folder):
    assert not [p for p in Path(folder).rglob("*") if p.name.endswith(".part")]


@st.composite
def command_lines(draw):
    info = registry.get_info(draw(st.sampled_from(INSTANT)))
    argv = ["--model", info.name]
    for name, value in draw(params_for(info)).items():
        argv += ["--param", f"{name}={value}"]
    if draw(one_in(6)):
        argv += ["--seed", str(draw(rarely(st.integers(0, 2**31 - 1), st.integers(-5, 2**32), 4)))]
    if draw(one_in(8)):
        argv += ["--region", draw(st.sampled_from(["-5,-5,30,30", "0,0,10", "5,5,2,2", "a,b,c,d", "0,0,1000,1000"]))]
    if draw(one_in(10)):
        argv += draw(st.sampled_from([["--sketch", "MASK"], ["--prompt", "x"], ["--attr", "smile=1"], ["--json"]]))
    return argv, draw(rarely(st.just(".png"), st.sampled_from([".jpg", ".tif", ".xyz", ""]), 6))


@budget(100)
@given(image_bytes(max_side=32), st.data())
def test_the_command_line_writes_a_complete_file_or_says_one_error(case, data):
    data_bytes, suffix = case
    argv, out_suffix = data.draw(command_lines())
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        img = d / f"in{suffix}"
        img.write_bytes(data_bytes)
        try:
            loaded = load_image(img)
            size = loaded.rgb.shape[:2]
        except ImageError:
            loaded, size = None, (data.draw(st.integers(1, 32)), data.draw(st.integers(1, 32)))
        mask = data.draw(masks(*size))
        if data.draw(one_in(10)):
            mask = mask[: max(1, size[0] // 2)]
        save_image(d / "mask.png", np.repeat((mask.astype(np.uint8) * (255 if mask.dtype == np.bool_ else 1))
                                             [..., None], 3, axis=2))
        out = d / "out" / f"result{out_suffix}"
        argv = ["inpaint", "--image", img, "--mask", d / "mask.png", "--out", out] + \
            [d / "mask.png" if a == "MASK" else a for a in argv]
        code, stdout, err = _cli(argv)
        errors = _check_lines(code, err)
        _no_leftovers(d)
        event(f"exit {code}" + (f": {_gist(errors[0])}" if errors else ""))
        if code != 0:
            assert len(errors) == 1, err
            assert not out.exists() or out.is_dir()
            return
        assert not errors and loaded is not None
        written = load_image(out if out.suffix else out / "in.png")
        if out.suffix == ".png":
            used = load_mask(d / "mask.png", size)
            assert _outside_identical(written.rgb, loaded.rgb, used)


@budget(20)
@given(st.lists(image_bytes(max_side=24), min_size=1, max_size=4), st.data())
def test_a_batch_attempts_every_image_and_reports_each_failure(cases, data):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "img").mkdir()
        (d / "mask").mkdir()
        names = []
        for i, (blob, suffix) in enumerate(cases):
            name = f"f{i}{suffix}"
            (d / "img" / name).write_bytes(blob)
            try:
                h, w = load_image(d / "img" / name).rgb.shape[:2]
            except ImageError:
                h, w = 8, 8
            if data.draw(st.integers(0, 5)):
                m = data.draw(masks(h, w))
                save_image(d / "mask" / f"{name}.png", np.repeat((m.astype(np.uint8) * 255)[..., None], 3, axis=2))
                (d / "mask" / f"{name}.png").rename(d / "mask" / name)
            names.append(name)
        code, stdout, err = _cli(["inpaint", "--image", d / "img", "--mask", d / "mask", "--out", d / "out"])
        errors = _check_lines(code, err)
        _no_leftovers(d)
        event(f"exit {code}")
        if code == 2:  # refused before any work (e.g. two names with one stem): nothing written
            assert len(errors) == 1 and not (d / "out").exists()
            return
        images = [n for n in names if not n.startswith(".")]
        written = {p.name for p in (d / "out").iterdir()} if (d / "out").exists() else set()
        failed = {e.split(": ")[1] for e in errors}
        assert len(written) + len(failed) == len(images) and (code == 1) == bool(failed), err
        assert err.splitlines()[-1].startswith("batch done: ")
        for p in written:
            load_image(d / "out" / p)
