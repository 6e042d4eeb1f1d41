"""The CelebA loader on a tiny fixture written in the test (the real layout, three images)."""
import cv2
import numpy as np
import pytest

from engine.face.celeba import CelebA, read_attributes, read_partition

NAMES = ["5_o_Clock_Shadow", "Eyeglasses", "Male", "Smiling", "Young"]


@pytest.fixture
def celeba_root(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    rows = {"000001.jpg": [-1, 1, 1, -1, 1], "000002.jpg": [1, -1, -1, 1, 1], "000003.jpg": [-1, -1, 1, 1, -1],
            "000004.jpg": [1, 1, 1, 1, 1]}
    for i, f in enumerate(rows):
        img = np.full((218, 178, 3), 40 * (i + 1), np.uint8)
        img[100:120, 60:120] = 255
        cv2.imwrite(str(tmp_path / "img_align_celeba" / f), img)
    lines = [str(len(rows)), " ".join(NAMES)] + [f"{f} " + " ".join(f"{v:2d}" for v in r) for f, r in rows.items()]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n000004.jpg 2\n")
    return tmp_path


def test_parse_attributes(celeba_root):
    names, table = read_attributes(celeba_root / "list_attr_celeba.txt")
    assert names == NAMES
    assert table["000002.jpg"].tolist() == [1, -1, -1, 1, 1]
    assert read_partition(celeba_root / "list_eval_partition.txt")["000003.jpg"] == 1


def test_splits_and_labels(celeba_root):
    train, valid, test = (CelebA(celeba_root, s, 64) for s in ("train", "valid", "test"))
    assert train.files == ["000001.jpg", "000002.jpg"]
    assert valid.files == ["000003.jpg"] and test.files == ["000004.jpg"]
    # (Smiling, Eyeglasses) as 0/1
    assert train.labels.tolist() == [[0, 1], [1, 0]]
    assert valid.labels.tolist() == [[1, 0]] and test.labels.tolist() == [[1, 1]]


def test_batch_shapes(celeba_root):
    ds = CelebA(celeba_root, "train", 64)
    imgs, labels, mouth, eyes = ds.batch(np.random.default_rng(0), 5)
    assert imgs.shape == (5, 64, 64, 3) and imgs.dtype == np.uint8
    assert labels.shape == (5, 2) and mouth.shape == (5, 4) and eyes.shape == (5, 4)
    assert eyes[0, 3] <= mouth[0, 1] + 2


def test_train_script_on_celeba(celeba_root, tmp_path):
    from engine.face import train

    out = tmp_path / "model"
    train.main(["--data", "celeba", "--root", str(celeba_root), "--tiny", "--batch", "4", "--pretrain-steps", "1",
                "--gan-steps", "1", "--d-warmup", "1", "--out", str(out)])
    assert (out / "model.safetensors").exists()
