"""Image loading: every real-world case normalises to 8-bit sRGB RGB (+alpha); bad files give one-line errors."""
import numpy as np
import pytest
from PIL import Image, ImageCms

from engine import atomic, imageio
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


# ---- issue 21: bad input never costs work --------------------------------------------------------------------
def _bomb_png(path, w, h):
    """A valid PNG of w x h black RGB pixels: deflate makes 100 megapixels a 291 KB file."""
    import struct
    import zlib

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * w)
    data = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if any pixel data is decoded."""
    from PIL import ImageFile

    def refuse(self, *a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, no_decoding):
    """A 291 KB PNG declaring 100 megapixels was decoded (1.6 GB) before it was refused."""
    bomb = _bomb_png(tmp_path / "bomb.png", 10_000, 10_000)
    assert bomb.stat().st_size < 400_000
    for read in (load_image, imageio.probe_image):
        with pytest.raises(ImageError, match="bomb.png: refused, a 292 KB file that declares 10000x10000 pixels "
                                             r"\(100 megapixels\) is likely a decompression bomb"):
            read(bomb)


def test_the_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch, no_decoding):
    Image.new("L", (1000, 1000)).save(tmp_path / "big.png")
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageError, match=r"too large \(1000x1000"):
        load_image(tmp_path / "big.png")


def test_honest_big_files_are_not_bombs(tmp_path, monkeypatch):
    """The ratio rule only starts at BOMB_PIXELS, and noise (incompressible) passes it."""
    monkeypatch.setattr(imageio, "BOMB_PIXELS", 10_000)
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    save_image(tmp_path / "noise.png", noise)
    assert load_image(tmp_path / "noise.png").rgb.shape == (120, 120, 3)
    save_image(tmp_path / "flat.png", np.zeros((120, 120, 3), np.uint8))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "flat.png")
    monkeypatch.setattr(imageio, "BOMB_PIXELS", 40_000_000)
    assert load_image(tmp_path / "flat.png").warnings == []


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_multi_frame_files_use_the_first_frame_and_say_so(tmp_path, suffix):
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / f"anim{suffix}", save_all=True, append_images=frames[1:])
    loaded = load_image(tmp_path / f"anim{suffix}")
    assert loaded.rgb.shape == (20, 30, 3) and abs(int(loaded.rgb[0, 0, 0]) - 10) <= 2
    assert loaded.info["frames"] == 3
    assert loaded.warnings == [f"{tmp_path / f'anim{suffix}'}: has 3 frames (an animation or several pages); only "
                               "the first is used"]
    assert load_image(_one_frame(tmp_path)).warnings == []
    warnings = []
    load_mask(tmp_path / f"anim{suffix}", (20, 30), warnings=warnings)
    assert len(warnings) == 1 and "3 frames" in warnings[0]


def _one_frame(tmp_path):
    save_image(tmp_path / "one.png", _grad())
    return tmp_path / "one.png"


def test_probe_reads_the_shown_size_without_decoding(tmp_path, no_decoding):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_grad(20, 30)).save(tmp_path / "r.jpg", exif=exif)
    Image.fromarray(_grad(20, 30)).save(tmp_path / "p.png")
    assert imageio.probe_image(tmp_path / "r.jpg").size == (20, 30)  # rotated a quarter, as load_image shows it
    assert imageio.probe_image(tmp_path / "p.png").size == (30, 20)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nnonsense")
    with pytest.raises(ImageError, match="junk.png: "):
        imageio.probe_image(tmp_path / "junk.png")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_a_broken_exif_block_or_colour_profile_does_not_refuse_the_pixels(tmp_path):
    im = Image.fromarray(_grad())
    im.save(tmp_path / "e.jpg", exif=b"Exif\x00\x00MM\x00*garbage", icc_profile=b"not a profile")
    loaded = load_image(tmp_path / "e.jpg")
    assert loaded.rgb.shape == (40, 60, 3) and not loaded.info["exif_rotated"]
    assert loaded.warnings == [f"{tmp_path / 'e.jpg'}: its colour profile is unreadable; its colours are used as "
                               "stored"]


def test_float_images_with_nan_and_inf_load(tmp_path):
    arr = np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)
    arr[0, 0], arr[0, 1], arr[0, 2] = np.nan, np.inf, -np.inf
    Image.fromarray(arr, "F").save(tmp_path / "f.tif")
    rgb = load_image(tmp_path / "f.tif").rgb
    assert rgb.shape == (10, 20, 3) and rgb[-1, -1, 0] == 255


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_users_umask_not_0600(tmp_path, umask, mode):
    """mkstemp made every export 0600; overwriting a 0644 file made it 0600."""
    import os
    import stat

    old = os.umask(umask)
    try:
        out = save_image(tmp_path / "new.png", _grad())
        assert stat.S_IMODE(out.stat().st_mode) == mode
        keep = tmp_path / "keep.png"
        keep.write_bytes(b"old")
        os.chmod(keep, 0o640)
        save_image(keep, _grad())  # an overwritten file keeps its own permissions
        assert stat.S_IMODE(keep.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def _dead_pid():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_are_cleaned_only_when_ours_and_dead(tmp_path):
    import os
    import time

    host, now = atomic._HOST, time.time()
    old = now - atomic.STALE_PART_SECONDS - 60
    files = {  # name: (age, should be removed)
        f".a.png.{_dead_pid()}@{host}.abcd1234.part": (now - 10, True),  # a writer of this host that is gone
        f".a.png.{os.getpid()}@{host}.abcd1234.part": (now - 10, False),  # ours, maybe being written
        f".b.png.{os.getpid() + 1}@00000000.abcd1234.part": (now - 10, False),  # another host: age decides
        f".c.png.{os.getpid() + 1}@00000000.abcd1234.part": (old, True),
        ".d.png.k2j4h5g6.part": (old, True),  # the name before PIDs were written, old
        ".e.png.k2j4h5g6.part": (now, False),
        ".f.png.part": (old, False),  # not our pattern
        "g.png.abcd1234.part": (old, False),  # not hidden: not ours
        ".h.png.ABCD1234.part": (old, False),  # mkstemp writes lower case
    }
    for name, (mtime, _) in files.items():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / ".i.png.abcd1234.part").symlink_to(tmp_path / "target")
    os.utime(tmp_path / ".i.png.abcd1234.part", (old, old), follow_symlinks=False)
    removed = {p.name for p in atomic.clean_stale_parts(tmp_path)}
    assert removed == {n for n, (_, gone) in files.items() if gone}
    assert (tmp_path / "target").exists() and (tmp_path / ".i.png.abcd1234.part").is_symlink()


def test_a_write_killed_with_sigkill_leaves_no_final_file_and_the_next_save_cleans_up(tmp_path):
    """kill -9 during an export left hidden .NAME.xxxx.part files that nothing removed."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    out = tmp_path / "out" / "x.png"
    code = ("import sys, time, numpy as np\n"
            "from PIL import Image\n"
            "from engine.imageio import save_image\n"
            "def slow(self, fp, *a, **k):\n"
            "    fp.write(b'half an image'); fp.flush(); time.sleep(60)\n"
            "Image.Image.save = slow\n"
            f"save_image({str(out)!r}, np.zeros((8, 8, 3), np.uint8))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.parent.glob(".x.png.*.part")):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = list(out.parent.glob(".x.png.*.part"))
    assert len(leftovers) == 1 and not out.exists()
    time.sleep(2.1)
    save_image(out.parent / "y.png", _grad())  # the next save into that folder removes the dead writer's file
    assert sorted(p.name for p in out.parent.iterdir()) == ["y.png"]


def test_check_output_knows_before_any_work(tmp_path):
    with pytest.raises(ImageError, match=r"o.xyz: unsupported file type .xyz"):
        imageio.check_output(tmp_path / "o.xyz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="is not a folder"):
        imageio.check_output(tmp_path / "file" / "o.png")
    with pytest.raises(ImageError, match="JPEG holds at most 65535 pixels a side"):
        imageio.check_output(tmp_path / "o.jpg", (70_000, 10))
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="dir.png: is a folder"):
        imageio.check_output(tmp_path / "dir.png")
    imageio.check_output(tmp_path / "new" / "deeper" / "o.png", (100, 100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file"]  # nothing made, nothing left


def test_file_names_that_are_not_utf8_are_written_into_png_text(tmp_path):
    name = b"caf\xe9.png".decode("utf-8", "surrogateescape")  # what Linux gives for a Latin-1 file name
    save_image(tmp_path / "o.png", _grad(), metadata={"source": name})
    with Image.open(tmp_path / "o.png") as im:
        assert im.text["source"] == "caf\\udce9.png"


def test_list_images_skips_hidden_files(tmp_path):
    for name in ("b.png", "a.JPG", "._a.jpg", ".a.png.123@abcd0123.k2j4h5g6.part", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in imageio.list_images(tmp_path)] == ["a.JPG", "b.png"]
