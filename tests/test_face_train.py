"""The flat training script runs end to end (pretrain, D warm-up, adversarial steps) on a tiny config."""
import json

from engine.face import train
from engine.face.model import from_pretrained


def test_train_script_tiny(tmp_path):
    out = tmp_path / "m"
    train.main(["--tiny", "--pool", "16", "--batch", "4", "--pretrain-steps", "2", "--gan-steps", "2",
                "--d-warmup", "1", "--log-every", "1", "--out", str(out)])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ch"] == 8 and cfg["training"]["steps"] == {"pretrain": 2, "d_warmup": 1, "gan": 2}
    assert from_pretrained(out).cfg.z_dim == 16
