"""The flat training script runs end to end (pretrain, D warm-up, adversarial steps) on a tiny config."""
import json

import numpy as np
import torch

from engine.face import train
from engine.face.model import reconstruction_bce
from engine.face.model import from_pretrained


def test_train_script_tiny(tmp_path):
    out = tmp_path / "m"
    train.main(["--tiny", "--pool", "16", "--batch", "4", "--pretrain-steps", "2", "--gan-steps", "2",
                "--d-warmup", "1", "--log-every", "1", "--out", str(out)])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ch"] == 8 and cfg["training"]["steps"] == {"pretrain": 2, "d_warmup": 1, "gan": 2}
    assert from_pretrained(out).cfg.z_dim == 16


def test_train_script_with_classifier_and_flipped_requests(tmp_path):
    out = tmp_path / "m"
    train.main(["--tiny", "--pool", "16", "--batch", "4", "--pretrain-steps", "2", "--gan-steps", "2",
                "--d-warmup", "1", "--cls-weight", "5", "--cls-steps", "2", "--flip-prob", "0.5", "--out", str(out)])
    facts = json.loads((out / "config.json").read_text())["training"]
    assert facts["cls_weight"] == 5 and facts["flip_prob"] == 0.5 and facts["steps"]["gan"] == 2


def test_flipped_requests_hide_only_the_masked_attribute_and_drop_its_hole_loss():
    rng = np.random.default_rng(0)
    attrs = torch.tensor([[0.0, 1.0]] * 4)
    regimes = np.array([0, 1, 2, 3])  # small, big, mouth, eye band
    want, hole_w = train.requests(rng, attrs, regimes, flip_prob=1.0, hole_weight=10.0)
    assert want.tolist() == [[0, 1], [0, 1], [1, 1], [0, 0]]  # mouth flips smile, eye band flips glasses
    assert hole_w.flatten().tolist() == [10, 10, 0, 0]
    want, hole_w = train.requests(rng, attrs, regimes, flip_prob=0.0, hole_weight=10.0)
    assert torch.equal(want, attrs) and (hole_w == 10).all()
    # a zero hole weight really removes the hole from the reconstruction term
    target, mask = torch.full((2, 3, 8, 8), 0.5), torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    logits = torch.zeros(2, 3, 8, 8)
    logits[:, :, 2:6, 2:6] = 5.0  # wrong only inside the hole
    per_sample = reconstruction_bce(logits, target, mask, torch.tensor([10.0, 0.0]).view(2, 1, 1, 1))
    outside_only = reconstruction_bce(torch.zeros(2, 3, 8, 8), target, mask, 0.0)
    assert per_sample[0] > per_sample[1] and torch.isclose(per_sample[1], outside_only[1])


def test_a_run_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "m"
    base = ["--tiny", "--pool", "16", "--batch", "4", "--d-warmup", "1", "--log-every", "100", "--out", str(out)]
    train.main(base + ["--pretrain-steps", "2", "--gan-steps", "0"])  # stops after pretraining
    assert json.loads((out / "train-state.json").read_text())["phase"] == "gan"
    train.main(base + ["--pretrain-steps", "2", "--gan-steps", "3", "--resume"])
    state = json.loads((out / "train-state.json").read_text())
    facts = json.loads((out / "config.json").read_text())["training"]
    assert state["phase"] == "done" and facts["steps"] == {"pretrain": 2, "d_warmup": 1, "gan": 3}


def test_training_runs_data_parallel_under_torchrun(tmp_path):
    """Two CPU processes (gloo): each its own shard, gradients averaged, one writer."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "engine.face.train", "--tiny", "--pool", "16", "--batch", "4", "--pretrain-steps", "2",
           "--gan-steps", "2", "--d-warmup", "1", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("saved") == 2, "only rank 0 writes: once after pretraining, once at the end"
    facts = json.loads((out / "config.json").read_text())["training"]
    assert facts["ranks"] == 2 and facts["steps"]["gan"] == 2
