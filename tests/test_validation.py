"""Bad values are refused before any work (issue 21): parameters and attributes finite, in range and of the right
type; requests (seed, region, sketch) checked by the runner before a model loads; a model that needs known pixels
refuses an all-white mask; a model folder whose config does not fit names the file."""
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from engine import registry
from engine.api import Attribute, Inpainter, InpaintError, ModelInfo, ModelOutput, Param, Request
from engine.runner import run_to_end
from engine.weights import MODELS_DIR

FLOAT = Param("minutes", "float", 3.0, min=0.05, max=120)
INT = Param("radius", "int", 5, min=1, max=50)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", float("nan"), float("inf"), "", "abc",
                                   None, [1.0], True])
def test_float_parameters_refuse_what_is_not_a_finite_number(value):
    """NaN slips past every range check (max(nan, 1e-3) is nan: frugal learned forever); inf is no number."""
    with pytest.raises(InpaintError, match="parameter minutes=.*expected a finite number"):
        FLOAT.parse(value)
    assert math.isfinite(Param("free", "float", 0.0).parse("1e300"))  # unbounded, but still finite
    with pytest.raises(InpaintError, match="finite"):
        Param("free", "float", 0.0).parse("-inf")


@pytest.mark.parametrize("value, expected", [("3", 3), ("3.0", 3), (" 7 ", 7), ("1e1", 10), (4, 4), (4.0, 4),
                                             (np.int64(6), 6), (True, 1)])
def test_int_parameters_take_whole_numbers(value, expected):
    got = INT.parse(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value, message", [("2.7", "expected a whole number"), (2.7, "expected a whole number"),
                                            ("inf", "expected a whole number"), ("nan", "expected a whole number"),
                                            ("1" * 5000, "expected a whole number"), ("0x10", "whole number"),
                                            ("99", r"radius=99 is outside \[1, 50\]"), ("0", "outside")])
def test_int_parameters_refuse_fractions_infinities_and_out_of_range(value, message):
    """radius=2.7 used to become 2 without a word; radius=inf was an "internal error (OverflowError)"."""
    with pytest.raises(InpaintError, match=message):
        INT.parse(value)


def test_bool_choice_and_text_parameters():
    b = Param("fast", "bool", False)
    assert [b.parse(v) for v in ("yes", "OFF", "1", 0, 1.0, np.bool_(True))] == [True, False, True, False, True, True]
    for bad in ("2", "maybe", 0.5, float("nan"), None):
        with pytest.raises(InpaintError, match="fast=.*expected 1/0, true/false"):
            b.parse(bad)
    with pytest.raises(InpaintError, match="one of a, b"):
        Param("c", "choice", "a", choices=("a", "b")).parse(None)
    with pytest.raises(InpaintError, match="expected text"):
        Param("f", "folder", "").parse("bad\x00path")  # no OS path holds a NUL: refused here, not in os.stat
    assert Param("s", "str", "").parse(3) == "3"


@pytest.mark.parametrize("value, message", [("nan", "expected a number from 0 to 1"), ("inf", "expected a number"),
                                            ("1e9", r"smile=1e\+09 is outside \[0, 1\]"), ("-0.5", "outside"),
                                            ("abc", "expected a number")])
def test_attributes_are_finite_and_in_their_range(value, message):
    """--attr smile=nan gave a black hole with exit 0; smile=1e9 was accepted."""
    info = ModelInfo(name="m", title="", family="", description="", domain="",
                     attributes=(Attribute("smile", "Smile", 1.0),))
    with pytest.raises(InpaintError, match=message):
        info.resolve_attributes({"smile": value})
    assert info.resolve_attributes({"smile": "0.25"}) == {"smile": 0.25}
    assert info.resolve_attributes({"smile": "no"}) == {"smile": 0.0}


class _Counting(Inpainter):
    """Counts geometry() calls (where a checkpoint model loads its weights) and runs."""

    def __init__(self, info):
        super().__init__(info)
        self.loads = self.runs = 0

    def geometry(self, params):
        self.loads += 1
        return super().geometry(params)

    def run(self, request, cancel):
        self.runs += 1
        yield from ()
        return ModelOutput(np.zeros_like(request.image))


def _request(**kw):
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    return Request(image=np.zeros((16, 16, 3), np.uint8), mask=mask, **kw)


@pytest.mark.parametrize("change, message", [
    ({"seed": -1}, "seed -1: expected a whole number from 0 to 2147483647"),
    ({"seed": 2**40}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"region": (10, 0, 5, 8)}, "x1 must exceed x0"),
    ({"region": (0, 0, float("nan"), 8)}, "four whole numbers"),
    ({"region": (0, 0, 8)}, "four whole numbers"),
    ({"sketch": np.zeros((8, 8), bool)}, "sketch is 8x8 but the image is 16x16"),
    ({"sketch": np.zeros((16, 16), np.float32)}, "sketch must be bool or uint8"),
    ({"prompt": None}, "prompt must be text"),
    ({"params": {"steps": "nan"}}, "finite"),
    ({"attributes": {"smile": "nan"}}, "attribute smile"),
])
def test_the_runner_refuses_a_bad_request_before_the_model_loads(change, message):
    info = ModelInfo(name="m", title="", family="", description="", domain="",
                     params=(Param("checkpoint", "folder", ""), Param("steps", "float", 1.0)),
                     attributes=(Attribute("smile", "Smile"),))
    model = _Counting(info)
    with pytest.raises(InpaintError, match=message):
        run_to_end(model, _request(**change))
    assert model.loads == model.runs == 0
    run_to_end(model, _request(seed=2**31 - 1, region=(0, 0, 16.0, 16)))  # integral floats are whole numbers
    assert model.runs == 1


def test_a_folder_parameter_must_name_a_folder(tmp_path):
    """Checked by the CLI before any work (test_cli.py); the models check their own folders when they load."""
    with pytest.raises(InpaintError, match=r"checkpoint='/no/such/folder': no such folder"):
        Param("checkpoint", "folder", "").check_value("/no/such/folder")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InpaintError, match="not a folder"):
        Param("checkpoint", "folder", "").check_value(str(tmp_path / "f"))
    Param("checkpoint", "folder", "").check_value(str(tmp_path))
    Param("checkpoint", "folder", "").check_value("")  # empty: the model says what it needs


@pytest.mark.parametrize("name", ["telea", "navier-stokes"])
def test_classical_models_refuse_a_mask_that_leaves_nothing_known(name):
    """An all-white mask gave the input back unchanged with exit 0: nothing to propagate from."""
    req = _request()
    req.mask[:] = True
    with pytest.raises(InpaintError, match="the mask covers the whole image"):
        run_to_end(registry.load(name), req)
    req.mask[0, 0] = False  # one known pixel is enough for OpenCV
    assert run_to_end(registry.load(name), req).image.shape == (16, 16, 3)


@pytest.fixture
def face_copy(tmp_path):
    """A copy of the shipped face model registered as ``face-copy`` (its files are the test's to break)."""
    folder = tmp_path / "face"
    shutil.copytree(MODELS_DIR / "face-cvae", folder)
    spec = registry.get_spec("face-cvae")
    registry.register(dataclasses.replace(spec, info=dataclasses.replace(spec.info, name="face-copy", weights=folder),
                                          kwargs={"folder": str(folder)}))
    yield folder
    registry.unregister("face-copy")
    from engine.weights import CACHE

    CACHE.clear()


def _set_config(folder, **values):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(values)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("values, message", [
    ({"ch": "big"}, r"config.json: FaceConfig.ch = \"big\" is not a whole number"),
    ({"res": 64.5}, "FaceConfig.res = 64.5 is not a whole number"),
    ({"skips": 3}, "FaceConfig.skips = 3 is not true or false"),
    ({"res": -3}, "config.json: no FaceConfig network can be built from it"),
    ({"n_attr": 3}, "model.safetensors: the weights do not fit this network .*size mismatch"),
])
def test_a_config_that_does_not_fit_names_the_file(face_copy, values, message):
    """Wrong-shape configs were "internal error (TypeError ...)" naming no file."""
    _set_config(face_copy, **values)
    req = _request()
    with pytest.raises(InpaintError, match=message) as caught:
        run_to_end(registry.load("face-copy"), dataclasses.replace(req, image=np.zeros((64, 64, 3), np.uint8),
                                                                   mask=np.pad(req.mask, 24)))
    assert str(face_copy) in str(caught.value)


def test_truncated_weights_name_the_file(face_copy):
    weights = face_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    req = Request(image=np.zeros((64, 64, 3), np.uint8), mask=np.pad(np.ones((8, 8), bool), 28))
    with pytest.raises(InpaintError, match=f"{weights}: not a readable safetensors file"):
        run_to_end(registry.load("face-copy"), req)


# ---- safetensors only -------------------------------------------------------------------------------------------
def test_no_loader_can_fall_back_to_a_pickle():
    """diffusers and transformers read a .bin pickle when no safetensors file is there, unless told not to: every
    from_pretrained of a network in engine/ passes use_safetensors=True; nothing calls torch.load or pickle.load
    (the MNIST reader's numpy-only unpickler excepted)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "engine"
    problems = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            if node.func.attr == "from_pretrained" and owner[:1].isupper() \
                    and not owner.endswith(("Tokenizer", "Scheduler", "Config")) \
                    and owner not in ("CompactUNet", "DigitClassifier"):  # the project's own: engine.weights
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("use_safetensors"), ast.Constant) and kw["use_safetensors"].value is True):
                    problems.append(f"{where}: {owner}.from_pretrained without use_safetensors=True")
            if node.func.attr == "load" and owner in ("torch", "pickle"):
                problems.append(f"{where}: {owner}.load")
    assert problems == []


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from engine.sd.tiny import make_tiny_sd_folder

    return make_tiny_sd_folder(tmp_path_factory.mktemp("sd") / "tiny-sd", latent_size=8)


@pytest.mark.parametrize("part, weights, pickle", [("unet", "diffusion_pytorch_model", "diffusion_pytorch_model"),
                                                   ("text_encoder", "model", "pytorch_model")])
def test_a_stable_diffusion_folder_with_only_pickles_is_refused(tiny_sd, tmp_path, part, weights, pickle):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd, folder)
    st_file = folder / part / f"{weights}.safetensors"
    torch.save(load_file(str(st_file)), folder / part / f"{pickle}.bin")
    st_file.unlink()
    with pytest.raises(InpaintError, match=f"{part}/"):
        _load_sd(folder)


@pytest.mark.parametrize("part", ["unet", "vae", "text_encoder"])
def test_a_stable_diffusion_folder_with_none_of_the_weights_is_refused(tiny_sd, tmp_path, part):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd, folder)
    save_file({"other.weight": torch.zeros(3)}, str(next((folder / part).glob("*.safetensors"))))
    with pytest.raises(InpaintError, match="missing|do not fit|not this"):
        _load_sd(folder)


def _load_sd(folder):
    from engine.sd.loading import detect, load_folder

    return load_folder(folder, detect(folder))
