"""The token family's training scripts: a few steps under torchrun with 2 CPU processes (DDP over gloo), resume
from a checkpoint, and each rank its own shard."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.distributed import Dist, shard

ROOT = Path(__file__).resolve().parents[1]
TINY_TOK = ["--domain", "mnist", "--n-train", "64", "--n-valid", "16", "--enc-hidden", "16", "--dec-grid", "16",
            "--dec-pixel", "8", "--levels", "4", "3", "3", "--batch-size", "8", "--log-every", "1",
            "--sample-every", "2", "--ckpt-every", "2", "--threads", "1", "--device", "cpu"]
TINY_TF = ["--domain", "mnist", "--n-train", "64", "--n-valid", "16", "--width", "32", "--layers", "2",
           "--decoder-layers", "1", "--heads", "2", "--batch-size", "8", "--log-every", "1", "--val-every", "2",
           "--sample-every", "2", "--ckpt-every", "2", "--threads", "1", "--device", "cpu"]


def _torchrun(module: str, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", module, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _python(module: str, args: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=str(ROOT), env=env, capture_output=True,
                          text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """A tokenizer and both transformers, 4 steps each, trained by 2 gloo processes."""
    root = tmp_path_factory.mktemp("token-train")
    _torchrun("engine.token.train_tokenizer", ["--out", str(root / "tok"), "--steps", "4", *TINY_TOK])
    for variant in ("bidirectional", "autoregressive"):
        _torchrun("engine.token.train", ["--variant", variant, "--tokenizer", str(root / "tok" / "export"),
                                         "--out", str(root / variant), "--steps", "4", *TINY_TF])
    return root


def test_two_process_ddp_trains_and_only_rank_0_writes(ddp_runs):
    for run in ("tok", "bidirectional", "autoregressive"):
        folder = ddp_runs / run
        assert (folder / "export" / "config.json").is_file() and (folder / "export" / "model.safetensors").is_file()
        assert (folder / "samples" / "final.png").is_file() and (folder / "ckpt.safetensors").is_file()
        steps = [json.loads(line).get("step") for line in (folder / "log.jsonl").read_text().splitlines()]
        assert steps == sorted(steps) and len(steps) == len(set(steps)) == 4, "one writer: no doubled log lines"
        facts = json.loads((folder / "export" / "config.json").read_text())["training"]
        assert facts["world"] == 2 and facts["steps"] == 4
        if run != "tok":  # free-running fills scored at each validation and at the end
            logged = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
            assert all(0 < r["val_fill_psnr"] < 60 for r in logged if "val_loss" in r)
            assert 0 < facts["validation"]["fill_psnr"] < 60


def test_exported_models_load_and_fill(ddp_runs):
    import torch

    from engine.api import drive
    from engine.token.pipeline import fill
    from engine.token.fsq import load_tokenizer
    from engine.token.transformer import load_transformer

    tok = load_tokenizer(ddp_runs / "tok" / "export")
    for variant in ("bidirectional", "autoregressive"):
        net = load_transformer(ddp_runs / variant / "export")
        x = torch.zeros(1, 1, 28, 28)
        hole = torch.zeros(1, 1, 28, 28)
        hole[..., 14:, :] = 1
        params = {"iterations": 4, "temperature": 1.0, "top_k": 0, "confidence_noise": 1.0}
        y, ids, calls = drive(fill(net, tok, x, hole, params, torch.Generator().manual_seed(0)))
        assert y.shape == x.shape and calls > 0 and (ids < net.config.vocab).all()


def test_resume_continues_from_the_checkpoint(ddp_runs, tmp_path):
    tok = str(ddp_runs / "tok" / "export")
    out = tmp_path / "resume"
    _python("engine.token.train", ["--tokenizer", tok, "--out", str(out), "--steps", "2", *TINY_TF])
    first = json.loads((out / "ckpt.json").read_text())
    assert first["step"] == 2
    proc = _python("engine.token.train", ["--tokenizer", tok, "--out", str(out), "--steps", "4", *TINY_TF])
    assert "resumed from" in proc.stdout and "at step 2" in proc.stdout
    assert json.loads((out / "ckpt.json").read_text())["step"] == 4
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_each_rank_gets_its_own_shard():
    data = np.arange(10)
    parts = [data[shard(len(data), Dist(rank=r, world=3))] for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert not set(parts[0]) & set(parts[1])
    assert np.array_equal(data[shard(len(data), Dist())], data)


def test_init_from_an_ids_only_model_starts_where_it_was(ddp_runs, tmp_path):
    """--init: an ids-only model seeds one that reads the known pixels; its pixel layer starts at zero, so the
    exported step-0 model gives the old model's logits whatever the pixels."""
    import torch

    from engine.token.transformer import load_transformer

    tok = str(ddp_runs / "tok" / "export")
    _python("engine.token.train", ["--tokenizer", tok, "--out", str(tmp_path / "ids"), "--steps", "2",
                                   "--known-pixels", "false", *TINY_TF])
    _python("engine.token.train", ["--tokenizer", tok, "--out", str(tmp_path / "px"), "--steps", "0",
                                   "--init", str(tmp_path / "ids" / "export"), *TINY_TF])
    old, new = load_transformer(tmp_path / "ids" / "export"), load_transformer(tmp_path / "px" / "export")
    assert old.config.pixels == 0 and new.config.pixels > 0
    ids = torch.randint(0, old.config.vocab, (2, 49))
    pixels = torch.rand(2, 49, new.config.pixels)
    assert torch.allclose(old(ids), new(ids, None, pixels), atol=1e-2), "int8 rounding only"
    bad = _python("engine.token.train", ["--tokenizer", tok, "--out", str(tmp_path / "bad"), "--steps", "0",
                                         "--init", str(tmp_path / "ids" / "export"), *TINY_TF, "--width", "64"],
                  ok=False)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: --init")
    assert "width" in bad.stderr and "Traceback" not in bad.stderr


def test_decoder_only_fine_tune_keeps_every_images_ids(ddp_runs, tmp_path):
    """--init + --decoder-only (+ conditioning augmentation and the detail loss): the decoder learns, the encoder
    (hence the ids the transformers were trained on) stays bit-identical."""
    import torch

    from engine.token.data import domain_images, to_unit
    from engine.token.fsq import load_tokenizer

    old_dir = ddp_runs / "tok" / "export"
    _python("engine.token.train_tokenizer", ["--out", str(tmp_path / "dec"), "--steps", "3", "--init", str(old_dir),
                                             "--decoder-only", "true", "--code-noise", "0.5", "--code-shift", "2",
                                             "--detail-weight", "1", "--pattern-weight", "1", *TINY_TOK])
    old, new = load_tokenizer(old_dir), load_tokenizer(tmp_path / "dec" / "export")
    x = to_unit(domain_images("mnist", "valid", 16))
    assert torch.equal(old.encode(x), new.encode(x))
    assert not torch.equal(old.decode(old.encode(x)), new.decode(new.encode(x))), "the decoder was trained"
    bad = _python("engine.token.train_tokenizer", ["--out", str(tmp_path / "bad"), "--steps", "1", "--init",
                                                   str(tmp_path / "missing"), *TINY_TOK], ok=False)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: --init")
    assert "Traceback" not in bad.stderr
