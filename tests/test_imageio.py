"""Image loading: every real-world case normalises to 8-bit sRGB RGB (+alpha); bad files give one-line errors."""
import numpy as np
import pytest
from PIL import Image, ImageCms

from engine import imageio
from engine.imageio import ImageError, load_image, load_mask, make_strip, save_image


def _grad(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 4, y * 6, (x + y) * 2]).astype(np.uint8)


def test_rgb_png_roundtrip_with_metadata(tmp_path):
    rgb = _grad()
    out = save_image(tmp_path / "a.png", rgb, metadata={"model": "telea", "seed": "7"})
    loaded = load_image(out)
    assert np.array_equal(loaded.rgb, rgb) and loaded.alpha is None
    with Image.open(out) as im:
        assert im.text["model"] == "telea" and im.text["seed"] == "7"


def test_exif_orientation_is_applied(tmp_path):
    rgb = _grad(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=100)
    loaded = load_image(tmp_path / "r.jpg")
    assert loaded.rgb.shape == (30, 20, 3) and loaded.info["exif_rotated"]


def test_rgba_alpha_is_kept_and_written_back(tmp_path):
    rgba = np.dstack([_grad(), np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert np.array_equal(loaded.alpha, rgba[..., 3]) and np.array_equal(loaded.rgb, rgba[..., :3])
    save_image(tmp_path / "b.png", loaded.rgb, loaded.alpha)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgba)
    save_image(tmp_path / "b.jpg", loaded.rgb, loaded.alpha)  # JPEG has no alpha: dropped, not an error
    assert Image.open(tmp_path / "b.jpg").mode == "RGB"


def test_16bit_greyscale_is_rescaled(tmp_path):
    grey16 = (np.tile(np.linspace(0, 65535, 50), (10, 1))).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb[0, 0, 0] == 0 and loaded.rgb[0, -1, 0] == 255
    assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])


def test_greyscale_palette_cmyk(tmp_path):
    Image.fromarray(_grad()[..., 0], "L").save(tmp_path / "l.png")
    assert load_image(tmp_path / "l.png").rgb.shape == (40, 60, 3)
    pal = Image.fromarray(_grad()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.rgb.shape == (40, 60, 3) and loaded.alpha is not None
    Image.fromarray(_grad()).convert("CMYK").save(tmp_path / "c.jpg")
    rgb = load_image(tmp_path / "c.jpg").rgb
    assert rgb.shape == (40, 60, 3) and np.abs(rgb.astype(int) - _grad()).mean() < 20


def test_icc_profile_is_converted_to_srgb(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_grad()).save(tmp_path / "s.png", icc_profile=srgb)
    loaded = load_image(tmp_path / "s.png")
    assert loaded.info["icc_converted"] and np.abs(loaded.rgb.astype(int) - _grad()).max() <= 2


@pytest.mark.parametrize("content, reason", [
    (b"", "not an image"),
    (b"hello, I am text", "not an image"),
])
def test_not_an_image(tmp_path, content, reason):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(tmp_path / "x.png")


def test_truncated_file_is_refused(tmp_path):
    save_image(tmp_path / "t.png", np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(tmp_path / "t.png")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("L", (1000, 1000)).save(tmp_path / "big.png")
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.png")


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"original")

    def boom(self, fp, *a, **k):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(ImageError, match="cannot write"):
        save_image(target, _grad())
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temp file left behind


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ImageError, match="unsupported"):
        save_image(tmp_path / "a.xyz", _grad())


def test_mask_loading_and_size_check(tmp_path):
    m = np.zeros((40, 60), bool)
    m[10:20, 5:25] = True
    imageio.save_mask(tmp_path / "m.png", m)
    assert np.array_equal(load_mask(tmp_path / "m.png", (40, 60)), m.astype(np.uint8) * 255)  # alpha: white = 255
    with pytest.raises(ImageError, match="mask is 60x40 but the image is 50x40"):
        load_mask(tmp_path / "m.png", (40, 50))


def test_strip_layout():
    rgb = _grad()
    m = np.zeros((40, 60), bool)
    m[5:10, 5:10] = True
    strip = make_strip(rgb, m, 255 - rgb)
    assert strip.shape == (40, 3 * 60 + 16, 3)
    assert np.array_equal(strip[:, :60], rgb)
    assert (strip[5:10, 68 + 5:68 + 10] == 128).all()
    assert np.array_equal(strip[:, 136:], 255 - rgb)
