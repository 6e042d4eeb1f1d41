"""Headless CLI: batch and single fills, learning ahead of a fill, and one clear error line (never a traceback) for
every bad input."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import registry
from engine.cli import main as cli
from engine.imageio import load_image, save_image, save_mask

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    save_image(tmp_path / "img.png", img)
    save_mask(tmp_path / "mask.png", mask)
    return tmp_path, img, mask


def _run(capsys, *argv):
    """The CLI in this process; an ``inpaint`` without --model uses telea here (instant, with the radius parameter
    these tests set), not the default model."""
    argv = list(argv)
    if argv[:1] == ["inpaint"] and "--model" not in argv:
        argv[1:1] = ["--model", "telea"]
    code = cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_names_domains_and_weights(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0 and "telea" in out and "WEIGHTS" in out
    code, out, _ = _run(capsys, "models", "--json")
    rows = json.loads(out)
    assert {"name", "domain", "weights"} <= set(rows[0])


def test_inpaint_single_file_with_metadata_and_json(files, capsys):
    d, img, mask = files
    code, out, err = _run(capsys, "inpaint", "--model", "telea", "--image", str(d / "img.png"), "--mask",
                          str(d / "mask.png"), "--out", str(d / "out.png"), "--param", "radius=3", "--seed", "4",
                          "--json")
    assert code == 0, err
    line = json.loads(out)
    assert line["model"] == "telea" and line["timings"]["total"] >= 0 and line["hole_pixels"] == mask.sum()
    res = load_image(d / "out.png").rgb
    assert np.array_equal(res[~mask], img[~mask]) and not np.array_equal(res[mask], img[mask])
    text = Image.open(d / "out.png").text
    assert text["model"] == "telea" and text["seed"] == "4" and json.loads(text["params"]) == {"radius": 3}


def test_inpaint_folders_batch(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for sub in ("in", "masks"):
        (tmp_path / sub).mkdir()
    for name in ("a.png", "b.png"):
        save_image(tmp_path / "in" / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        m = np.zeros((32, 32), bool)
        m[5:15, 5:15] = True
        save_mask(tmp_path / "masks" / name, m)
    code, out, err = _run(capsys, "inpaint", "--image", str(tmp_path / "in"), "--mask", str(tmp_path / "masks"),
                          "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_alpha_is_kept(tmp_path, capsys):
    rgba = np.random.default_rng(2).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    m = np.zeros((32, 32), bool)
    m[8:16, 8:16] = True
    save_mask(tmp_path / "m.png", m)
    assert _run(capsys, "inpaint", "--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"),
                "--out", str(tmp_path / "o.png"))[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png"))[..., 3], rgba[..., 3])


def _bad_cases(d: Path):
    img, mask, out = str(d / "img.png"), str(d / "mask.png"), str(d / "out.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    save_mask(d / "small_mask.png", np.ones((10, 10), bool))
    save_mask(d / "empty_mask.png", np.zeros((48, 64), bool))
    (d / "exists.png").write_bytes(b"keep me")
    base = ["inpaint", "--image", img, "--mask", mask]
    return [
        (base + ["--out", out, "--model", "nope"], 1, "unknown model 'nope'"),
        (["inpaint", "--image", str(d / "missing.png"), "--mask", mask, "--out", out], 2, "no such file"),
        (["inpaint", "--image", str(d / "corrupt.png"), "--mask", mask, "--out", out], 1, "corrupt or truncated"),
        (base[:3] + ["--mask", str(d / "small_mask.png"), "--out", out], 1, "mask is 10x10 but the image is 64x48"),
        (base[:3] + ["--mask", str(d / "empty_mask.png"), "--out", out], 1, "mask is empty"),
        (base + ["--out", out, "--param", "radius=abc"], 1, "expected a whole number"),
        (base + ["--out", out, "--param", "radius"], 2, "expected NAME=VALUE"),
        (base + ["--out", out, "--param", "steps=3"], 1, "no parameter 'steps'"),
        (base + ["--out", out, "--attr", "smile=1"], 1, "no attribute 'smile'"),
        (base + ["--out", str(d / "exists.png")], 2, "exists; pass --overwrite"),
        (base + ["--out", img, "--overwrite"], 2, "is the input image itself"),
        (base + ["--out", str(d / "out.xyz")], 1, "unsupported file type"),
        (base + ["--out", out, "--region", "1,2,3"], 2, "expected x0,y0,x1,y1"),
        (["inpaint", "--image", img], 2, "required"),
        (["inpaint", "--image", str(d), "--mask", mask, "--out", str(d / "o")], 2, "must be folders"),
    ]


def test_every_bad_input_gives_one_clear_line(files, capsys):
    d, _, _ = files
    for argv, code, message in _bad_cases(d):
        got, out, err = _run(capsys, *argv)
        assert got == code, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (argv, err)
    assert (d / "exists.png").read_bytes() == b"keep me"
    assert not (d / "out.png").exists()


def test_real_process_exit_codes_and_no_traceback(files):
    d, _, _ = files
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "inpaint", "--image", str(d / "nope.png"),
                           "--mask", str(d / "mask.png"), "--out", str(d / "o.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error:")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "inpaint", "--image", str(d / "img.png"),
                           "--mask", str(d / "mask.png"), "--out", str(d / "o.png"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["model"] == registry.DEFAULT_MODEL
    # every headless command reaches the CLI from main.py (an unknown first word opens the editor instead)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "learn", "--model", "telea", "--image",
                           str(d / "img.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "does not learn" in proc.stderr
    from engine.cli import COMMANDS, build_parser

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subcommands.choices) == set(COMMANDS)


def test_region_models_get_the_detected_box_when_none_is_given(files, capsys, monkeypatch):
    """Without --region, a uses_region model works on the box its detector suggests (as the editor pre-places)."""
    import dataclasses

    from engine import registry

    d, img, mask = files
    seen = {}
    spec = registry.get_spec("telea")
    info = dataclasses.replace(spec.info, name="telea-region", uses_region=True)
    registry.register(dataclasses.replace(spec, info=info, region_detector="tests.test_cli:_fake_detector"))
    real_run = registry.load("telea-region").run

    def spy(request, cancel):  # the runner hands the model the region's crop
        seen["region"] = request.image.shape[:2]
        return real_run(request, cancel)

    monkeypatch.setattr(registry.load("telea-region"), "run", spy)
    try:
        code, _, err = _run(capsys, "inpaint", "--model", "telea-region", "--image", str(d / "img.png"),
                            "--mask", str(d / "mask.png"), "--out", str(d / "o.png"))
        assert code == 0, err
        assert seen["region"] == (39, 39)  # the detector's box (1, 2, 40, 41)
        code, _, err = _run(capsys, "inpaint", "--model", "telea-region", "--image", str(d / "img.png"),
                            "--mask", str(d / "mask.png"), "--out", str(d / "o2.png"), "--region", "0,0,30,30")
        assert code == 0, err
        assert seen["region"] == (30, 30)
    finally:
        registry.unregister("telea-region")


def _fake_detector(image):
    return (1, 2, 40, 41)


def test_learn_caches_the_weights_a_later_fill_uses(files, capsys, monkeypatch):
    import engine.datasets

    monkeypatch.setattr(engine.datasets, "CACHE", files[0] / "cache")
    d, img, mask = files
    tiny = ["--param", "iterations=6", "--param", "crop=16", "--param", "batch=2", "--param", "steps=2"]
    code, out, err = _run(capsys, "learn", "--image", str(d / "img.png"), "--mask", str(d / "mask.png"), *tiny)
    assert code == 0, err
    assert "learned in" in out and "6 iterations" in out
    cached = list((d / "cache" / "frugal").glob("*/model.safetensors"))
    assert len(cached) == 1 and str(cached[0].parent) in out
    code, out, err = _run(capsys, "learn", "--image", str(d / "img.png"), *tiny, "--json", "--device", "cpu")
    assert code == 0 and json.loads(out)["cached"] is True and json.loads(out)["device"] == "cpu", err  # no mask
    from engine import device

    monkeypatch.delenv(device.ENV, raising=False)
    assert device.chosen() == "auto"  # --device lasts one command
    before = cached[0].stat()
    code, out, err = _run(capsys, "inpaint", "--model", "frugal", "--image", str(d / "img.png"), "--mask",
                          str(d / "mask.png"), "--out", str(d / "o.png"), *tiny)
    assert code == 0, err
    after = cached[0].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the fill did not relearn"
    for argv, want, message in ((["learn", "--model", "telea", "--image", str(d / "img.png")], 2, "does not learn"),
                                (["learn", "--image", str(d / "nope.png")], 2, "no such file"),
                                (["learn", "--image", str(d / "img.png"), "--param", "nope=1"], 1, "no parameter"),
                                (["learn", "--image", str(d / "img.png"), "--device", "tpu"], 1, "--device='tpu'"),
                                (["inpaint", "--model", "frugal", "--image", str(d / "img.png"), "--mask",
                                  str(d / "mask.png"), "--out", str(d / "o2.png"), "--device", "cuda:9"], 1,
                                 "--device=cuda:9")):
        code, _, err = _run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == want and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


# ---- issue 21: every check before work ------------------------------------------------------------------------
@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a model is loaded: the command must have stopped before any work."""
    from engine import registry

    def refuse(name):
        raise AssertionError(f"model {name} was loaded")

    monkeypatch.setattr(registry, "load", refuse)


def _checked_before_work(d: Path):
    img, mask, out = str(d / "img.png"), str(d / "mask.png"), str(d / "out.png")
    (d / "a-file").write_text("x")
    save_mask(d / "white.png", np.ones((48, 64), bool))
    frugal = ["inpaint", "--model", "frugal", "--image", img, "--mask", mask]
    return [
        (frugal + ["--out", str(d / "o.xyz")], 1, "o.xyz: unsupported file type .xyz"),  # 17 s of learning lost
        (frugal + ["--out", str(d / "a-file" / "o.png")], 1, "cannot write there"),
        (frugal + ["--out", out, "--param", "minutes=nan"], 1, "parameter minutes='nan': expected a finite number"),
        (frugal + ["--out", out, "--param", "minutes=inf"], 1, "expected a finite number"),
        (frugal + ["--out", out, "--param", f"folder={d / 'typo'}"], 1, "no such folder"),
        (["inpaint", "--image", img, "--mask", mask, "--out", out, "--param", "radius=2.7"], 1,
         "parameter radius='2.7': expected a whole number"),
        (["inpaint", "--image", img, "--mask", mask, "--out", out, "--param", "radius=inf"], 1, "whole number"),
        (["inpaint", "--model", "face-cvae", "--image", img, "--mask", mask, "--out", out, "--attr", "smile=nan"], 1,
         "attribute smile='nan': expected a number from 0 to 1"),
        (["inpaint", "--model", "face-cvae", "--image", img, "--mask", mask, "--out", out, "--param",
          "variation_scale=nan"], 1, "expected a finite number"),
        (["inpaint", "--model", "face-cvae", "--image", img, "--mask", mask, "--out", out, "--attr", "smile=1e9"], 1,
         "is outside [0, 1]"),
        (["inpaint", "--image", img, "--mask", mask, "--out", out, "--sketch", mask], 2,
         "model telea takes no sketch, so --sketch would be ignored (these do: sketch-mnist"),
        (["inpaint", "--image", img, "--mask", mask, "--out", out, "--prompt", "a cat"], 2, "takes no text prompt"),
        (["inpaint", "--image", img, "--mask", mask, "--out", out, "--seed", "-1"], 2, "--seed -1: expected"),
        (["inpaint", "--image", img, "--mask", str(d / "white.png"), "--out", str(d / "o.jpg"), "--param",
          "radius=0"], 1, "outside [1, 50]"),
        (["inpaint", "--model", "repaint-ddpm-folder", "--param", f"checkpoint={d / 'typo'}", "--image", img, "--mask",
          mask, "--out", out], 1, f"parameter checkpoint='{d / 'typo'}': no such folder"),  # was sent to the hub
        (["inpaint", "--model", "sd-sketch", "--param", f"checkpoint={d / 'img.png'}", "--prompt", "x", "--image", img,
          "--mask", mask, "--out", out], 1, "not a checkpoint (a .safetensors file or a folder)"),
        (["learn", "--image", img, "--param", "minutes=nan", "--param", "iterations=50"], 1, "finite"),  # it hung
        (["learn", "--image", img, "--param", f"folder={d / 'typo'}"], 1, "no such folder"),
        (["learn", "--image", img, "--mask", str(d / "nope.png")], 2, "--mask"),
    ]


def test_every_check_comes_before_any_model_loads(files, capsys, no_model):
    d, _, _ = files
    for argv, code, message in _checked_before_work(d):
        got, out, err = _run(capsys, *argv)
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (argv, err)
    assert sorted(p.name for p in d.iterdir()) == ["a-file", "img.png", "mask.png", "white.png"]


def test_an_all_white_mask_is_an_error_for_telea(files, capsys):
    d, _, _ = files
    save_mask(d / "white.png", np.ones((48, 64), bool))
    code, _, err = _run(capsys, "inpaint", "--image", str(d / "img.png"), "--mask", str(d / "white.png"), "--out",
                        str(d / "o.png"))
    assert code == 1 and "the mask covers the whole image" in err and not (d / "o.png").exists()


def test_a_negative_region_needs_no_equals_sign(files, capsys):
    d, _, _ = files
    base = ["inpaint", "--image", str(d / "img.png"), "--mask", str(d / "mask.png")]
    code, _, err = _run(capsys, *base, "--out", str(d / "o.png"), "--region", "-10,-5,50,40")
    assert code == 0, err
    code, _, err = _run(capsys, *base, "--out", str(d / "o2.png"), "--region", "-10,-5,5")
    assert code == 2 and "--region '-10,-5,5': expected x0,y0,x1,y1" in err
    code, _, err = _run(capsys, *base, "--region", "--out", str(d / "o3.png"))  # an option is no value
    assert code == 2 and "--region: expected one argument" in err


def test_a_trailing_slash_makes_out_a_folder(files, capsys):
    d, _, _ = files
    code, out, err = _run(capsys, "inpaint", "--image", str(d / "img.png"), "--mask", str(d / "mask.png"), "--out",
                          str(d / "results") + "/")
    assert code == 0 and (d / "results" / "img.png").is_file(), err


def test_outputs_get_the_users_umask(files, capsys):
    import os
    import stat

    d, _, _ = files
    old = os.umask(0o022)
    try:
        assert _run(capsys, "inpaint", "--image", str(d / "img.png"), "--mask", str(d / "mask.png"), "--out",
                    str(d / "o.png"))[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((d / "o.png").stat().st_mode) == 0o644


def test_a_multi_frame_input_is_used_with_a_warning(files, capsys):
    d, img, _ = files
    frames = [Image.fromarray(img), Image.fromarray(255 - img)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    code, out, err = _run(capsys, "inpaint", "--image", str(d / "anim.gif"), "--mask", str(d / "mask.png"), "--out",
                          str(d / "o.png"))
    assert code == 0 and err == f"warning: {d / 'anim.gif'}: has 2 frames (an animation or several pages); only " \
                                "the first is used\n"


def test_a_terminal_that_is_not_utf8_does_not_fail_a_written_file(files):
    """The file was written, then printing its name to an ASCII console raised: exit 1 after the work was done."""
    import os

    d, _, _ = files
    (d / "café.png").write_bytes((d / "img.png").read_bytes())
    env = dict(os.environ, PYTHONIOENCODING="ascii:strict")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "inpaint", "--image", str(d / "café.png"), "--mask",
                           str(d / "mask.png"), "--out", str(d / "résultat.png")],
                          capture_output=True, timeout=120, env=env)
    assert proc.returncode == 0 and (d / "résultat.png").is_file(), proc.stderr
    assert b"r\\xe9sultat.png" in proc.stdout
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "inpaint", "--image", str(d / "café.png"), "--mask",
                           str(d / "mask.png"), "--out", str(d / "résultat.png")],
                          capture_output=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith(b"error: ") and b"r\\xe9sultat.png exists" in proc.stderr


@pytest.mark.parametrize("model", ["telea", "patch"])
def test_models_that_need_no_torch_never_import_it(files, model):
    """Importing torch costs about 2 s of a CLI fill; Telea and patch never use it (issue 25: start-up)."""
    d, _, _ = files
    code = ("import sys; from engine.cli import main; "
            f"rc = main(['inpaint', '--model', '{model}', '--image', r'{d / 'img.png'}', '--mask', r'{d / 'mask.png'}',"
            f" '--out', r'{d / 'out.png'}']); print('torch' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split()[-2:] == ["False", "0"], out.stdout + out.stderr
