"""The batch contract of ``python main.py inpaint --image DIR`` (issue 21): every image attempted, a bad one reported
in one named line while the rest are filled, the exit code says whether any failed, a summary line ends it,
outputs never collide or replace inputs, and ``--resume`` skips what is already done and valid."""
import json

import numpy as np
import pytest
from PIL import Image

from engine import registry
from engine.api import Inpainter, ModelInfo, ModelOutput, Param, Preview
from engine.cli import main as cli
from engine.imageio import load_image, save_image, save_mask
from engine.registry import ModelSpec


def _run(capsys, *argv):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _image(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h=24, w=32, on=True):
    m = np.zeros((h, w), bool)
    m[6:14, 8:20] = on
    return m


@pytest.fixture
def folders(tmp_path):
    img, msk = tmp_path / "img", tmp_path / "mask"
    img.mkdir()
    msk.mkdir()
    return tmp_path, img, msk


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a model is loaded: the command must have stopped before any work."""
    def refuse(name):
        raise AssertionError(f"model {name} was loaded")

    monkeypatch.setattr(registry, "load", refuse)


def test_two_inputs_never_write_one_output(folders, capsys, no_model):
    """a.jpg and a.png were both written to out/a.png, exit 0: the first result was lost."""
    d, img, msk = folders
    for name in ("a.jpg", "a.png"):
        Image.fromarray(_image(1)).save(img / name)
        save_mask(msk / name, _mask())
    code, out, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out")
    assert code == 2 and err == f"error: {img / 'a.jpg'} and {img / 'a.png'} would both be written to " \
                                f"{d / 'out' / 'a.png'}; rename one of them (outputs are NAME.png)\n"
    assert not (d / "out").exists()


def test_names_that_differ_only_in_case_collide_too(folders, capsys, no_model):
    """On Windows, macOS or a FAT card A.png and a.png are one file."""
    d, img, msk = folders
    for name in ("A.png", "a.png"):
        save_image(img / name, _image(1))
        save_mask(msk / name, _mask())
    code, _, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out")
    assert code == 2 and "would both be written to" in err


def _bad_batch(d, img, msk):
    """a, f good; b corrupt; c has no mask; d's mask is the wrong size; e's mask is empty; notes.txt no image."""
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png", "f.png"):
        save_image(img / name, _image(ord(name[0])))
    (img / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (img / "notes.txt").write_text("not an image")
    for name in ("a.png", "b.png", "f.png"):
        save_mask(msk / name, _mask())
    save_mask(msk / "d.png", np.ones((10, 10), bool))
    save_mask(msk / "e.png", _mask(on=False))


def test_one_bad_file_does_not_stop_a_batch(folders, capsys):
    """A bad file stopped the batch: the remaining images were never processed."""
    d, img, msk = folders
    _bad_batch(d, img, msk)
    code, out, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out")
    assert code == 1
    assert sorted(p.name for p in (d / "out").iterdir()) == ["a.png", "f.png"]
    lines = err.strip().splitlines()
    assert lines[0] == f"warning: {img}: skipped 1 file(s) that are not images by name: notes.txt"
    errors = [line for line in lines if line.startswith("error: ")]
    assert [e.split(": ")[1] for e in errors] == [str(img / n) for n in ("b.png", "c.png", "d.png", "e.png")]
    assert "not an image file" in errors[0] and f"no mask named c.png in {msk}" in errors[1]
    assert "mask is 10x10 but the image is 32x24" in errors[2] and "the mask is empty" in errors[3]
    assert lines[-1] == "batch done: 2 written, 4 failed (of 6)"
    assert out.splitlines() == [f"{d / 'out' / n}  (" + out.splitlines()[i].split("(")[1]
                                for i, n in enumerate(("a.png", "f.png"))]


def test_resume_skips_valid_outputs_and_redoes_the_rest(folders, capsys):
    """A rerun needed --overwrite, redoing what was done; --resume keeps what is valid."""
    d, img, msk = folders
    _bad_batch(d, img, msk)
    _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out")
    a_before = (d / "out" / "a.png").stat().st_mtime_ns
    save_image(img / "b.png", _image(5))  # the user fixes two of the inputs
    save_mask(msk / "c.png", _mask())
    data = (d / "out" / "f.png").read_bytes()
    (d / "out" / "f.png").write_bytes(data[:len(data) // 2])  # a truncated output (another tool wrote it)
    code, out, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out")
    assert code == 2 and "exists (and 1 more); pass --overwrite to replace it or --resume" in err
    code, out, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out", "--resume")
    assert code == 1, err  # d and e still fail
    assert (d / "out" / "a.png").stat().st_mtime_ns == a_before
    assert f"{d / 'out' / 'a.png'}  (already done)" in out.splitlines()
    assert f"warning: {d / 'out' / 'f.png'} will be redone: corrupt or truncated image" in err, err
    assert err.strip().splitlines()[-1] == "batch done: 3 written, 1 already done, 2 failed (of 6)"
    assert load_image(d / "out" / "f.png").rgb.shape == (24, 32, 3)
    save_image(d / "out" / "b.png", _image(5, 10, 10))  # an output of the wrong size is redone too
    code, out, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out", "--resume",
                          "--json")
    assert "b.png will be redone: it is 10x10, the image 32x24" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r.get("skipped") for r in records if "skipped" in r] == ["already done"] * 3
    assert {r["image"].rsplit("/", 1)[1]: r["error"] for r in records if "error" in r}.keys() == {"d.png", "e.png"}
    assert code == 1 and load_image(d / "out" / "b.png").rgb.shape == (24, 32, 3)


@pytest.mark.parametrize("extra, message", [
    (["--resume", "--overwrite"], "not allowed with argument"),
])
def test_resume_and_overwrite_exclude_each_other(folders, capsys, extra, message, no_model):
    d, img, msk = folders
    save_image(img / "a.png", _image(1))
    save_mask(msk / "a.png", _mask())
    code, _, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", d / "out", *extra)
    assert code == 2 and message in err


def test_outputs_never_replace_inputs_or_mix_with_them(folders, capsys, no_model):
    d, img, msk = folders
    save_image(img / "a.png", _image(1))
    save_mask(msk / "a.png", _mask())
    for out, message in ((img, "is the --image folder"), (msk, "is the --mask folder")):
        code, _, err = _run(capsys, "inpaint", "--image", img, "--mask", msk, "--out", out, "--overwrite")
        assert code == 2 and message in err, err
    code, _, err = _run(capsys, "inpaint", "--image", img / "a.png", "--mask", msk / "a.png", "--out",
                        msk / "a.png", "--overwrite")
    assert code == 2 and "is the mask of a.png" in err
    assert load_image(msk / "a.png").rgb.shape == (24, 32, 3)


class _Flaky(Inpainter):
    """Fills with grey; image content decides: red top-left pixel = a bug (RuntimeError), blue = Ctrl-C."""

    def run(self, request, cancel):
        r, g, b = request.image[0, 0]
        if (r, g, b) == (255, 0, 0):
            raise RuntimeError("a model bug")
        if (r, g, b) == (0, 0, 255):
            raise KeyboardInterrupt
        yield Preview(step=1, total=1)
        return ModelOutput(np.full_like(request.image, 128))


@pytest.fixture
def flaky():
    registry.register(ModelSpec(ModelInfo(name="test-flaky", title="", family="test", description="", domain="",
                                          params=(Param("checkpoint", "folder", ""),)),
                                factory="tests.test_batch:_Flaky"))
    yield "test-flaky"
    registry.unregister("test-flaky")


def _coloured(folder, msk, name, colour):
    im = _image(3)
    im[0, 0] = colour
    save_image(folder / name, im)
    save_mask(msk / name, _mask())


def test_a_model_error_on_one_image_is_reported_and_the_batch_goes_on(folders, capsys, flaky):
    d, img, msk = folders
    _coloured(img, msk, "a.png", (255, 0, 0))
    _coloured(img, msk, "b.png", (1, 2, 3))
    code, out, err = _run(capsys, "inpaint", "--model", flaky, "--image", img, "--mask", msk, "--out", d / "out")
    assert code == 1 and (d / "out" / "b.png").exists() and not (d / "out" / "a.png").exists()
    assert f"error: {img / 'a.png'}: internal error (RuntimeError: a model bug)" in err.splitlines()
    assert err.splitlines()[-1] == "batch done: 1 written, 1 failed (of 2)"


def test_an_interrupted_batch_says_what_was_done(folders, capsys, flaky):
    d, img, msk = folders
    _coloured(img, msk, "a.png", (1, 2, 3))
    _coloured(img, msk, "b.png", (0, 0, 255))
    _coloured(img, msk, "c.png", (1, 2, 3))
    code, out, err = _run(capsys, "inpaint", "--model", flaky, "--image", img, "--mask", msk, "--out", d / "out")
    assert code == 130 and "interrupted: 1 written, 0 failed, 2 not attempted (of 3)" in err
    assert sorted(p.name for p in (d / "out").iterdir()) == ["a.png"]  # b was never written, not even in part


def test_a_missing_checkpoint_folder_is_one_error_before_any_image(folders, capsys, flaky, no_model):
    d, img, msk = folders
    for name in ("a.png", "b.png"):
        _coloured(img, msk, name, (1, 2, 3))
    code, out, err = _run(capsys, "inpaint", "--model", flaky, "--image", img, "--mask", msk, "--out", d / "out",
                          "--param", f"checkpoint={d / 'typo'}")
    assert code == 1 and err == f"error: parameter checkpoint='{d / 'typo'}': no such folder\n"


def test_a_checkpoint_with_none_of_the_weights_is_one_error_before_any_image(folders, capsys, tmp_path):
    """repaint-ddpm-folder on a safetensors file holding other keys ran on random weights with exit 0; in a
    batch it must fail once, before the first image, naming the file."""
    import torch
    from safetensors.torch import save_file

    from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
    from engine.ddpm.model import build_unet, save_ddpm

    d, img, msk = folders
    for name in ("a.png", "b.png"):
        save_image(img / name, _image(1))
        save_mask(msk / name, _mask())
    ckpt = tmp_path / "ckpt"
    save_ddpm(ckpt, build_unet(sample_size=8, channels=(8, 8), attention=False, groups=4),
              NoiseSchedule(ScheduleConfig(100)))
    save_file({"other.weight": torch.zeros(3)}, str(ckpt / "diffusion_pytorch_model.safetensors"))
    code, out, err = _run(capsys, "inpaint", "--model", "repaint-ddpm-folder", "--param", f"checkpoint={ckpt}",
                          "--param", "fast=1", "--image", img, "--mask", msk, "--out", d / "out")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {ckpt / 'diffusion_pytorch_model'}")
    assert "weights are missing" in lines[0] and not (d / "out").exists()


def test_a_folder_through_a_batching_model_gives_each_image_its_own_fill(folders, capsys, tmp_path):
    """--batch N fills N images of a folder together (repaint models batch): every output is the one a batch of one
    writes, and an image that cannot be used (an empty mask) still fails alone, naming itself."""
    from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
    from engine.ddpm.model import build_unet, save_ddpm

    d, img, msk = folders
    for i in range(5):
        save_image(img / f"{i}.png", _image(i))
        save_mask(msk / f"{i}.png", _mask(on=i != 2))  # 2: an empty mask, found when the batch decodes it
    ckpt = tmp_path / "ckpt"
    save_ddpm(ckpt, build_unet(sample_size=8, channels=(8, 8), attention=False, groups=4),
              NoiseSchedule(ScheduleConfig(100)))
    common = ("inpaint", "--model", "repaint-ddpm-folder", "--param", f"checkpoint={ckpt}", "--param", "steps=10",
              "--param", "resamples=2", "--image", img, "--mask", msk)
    code1, out1, err1 = _run(capsys, *common, "--out", d / "one", "--batch", "1")
    code3, out3, err3 = _run(capsys, *common, "--out", d / "three", "--batch", "3")
    assert code1 == code3 == 1
    assert err1.splitlines()[-1] == err3.splitlines()[-1] == "batch done: 4 written, 1 failed (of 5)"
    assert f"error: {img / '2.png'}: the mask is empty: paint the area to fill first" in err3.splitlines()
    assert "3 together" in out3 and "together" not in out1
    for i in (0, 1, 3, 4):
        assert np.array_equal(load_image(d / "one" / f"{i}.png").rgb, load_image(d / "three" / f"{i}.png").rgb)
    code, out, err = _run(capsys, *common, "--out", d / "zero", "--batch", "0")
    assert code == 2 and err == "error: --batch 0: expected 1 or more images at a time\n"
