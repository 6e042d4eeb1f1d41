"""The desktop bundle's smoke checks (packaging/build.py), run on the source checkout: every family fills the sample
through a real ``main.py inpaint`` process and keeps the pixels outside the mask. The frozen build runs the same
checks (``python3 dev.py package``), so a failure there is the bundle's, not the checks'."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

import build  # noqa: E402


@pytest.fixture(scope="module")
def checks():
    # the editor self-test has its own test (tests/editor/test_editor_files.py)
    return {c["check"]: c for c in build.smoke(build.source_command(), self_test=False, log=lambda line: None)}


def test_every_family_has_a_check(checks):
    from engine import registry

    families = {m.family for m in registry.all_models() if not m.name.startswith("test-")}
    checked = {m.family for m in registry.all_models() if f"inpaint {m.name}" in checks}
    assert families <= checked, f"families without a bundle check: {sorted(families - checked)}"


@pytest.mark.parametrize("check", [f"inpaint {m}" for m in build.FILLS])  # "models" would compare it with itself
def test_smoke_check_passes_on_the_source(checks, check):
    assert checks[check]["ok"], checks[check]["problem"]


FAKE = """
import json, subprocess, sys
import numpy as np
from PIL import Image
args = sys.argv[2:]
if args[0] == "models":
    listed = json.loads(subprocess.run([sys.executable, {main!r}, *args], capture_output=True, text=True).stdout)
    if sys.argv[1] == "lost":  # the first model with weights has lost them
        next(m for m in listed if m["weights"])["weights"] = False
    print(json.dumps(listed))
    sys.exit(0)
if sys.argv[1] == "silent":
    sys.exit(0)
a = np.asarray(Image.open(args[args.index("--image") + 1]).convert("RGB")).copy()
if sys.argv[1] == "outside":
    a[0, 0] = 255 - a[0, 0]
Image.fromarray(a).save(args[args.index("--out") + 1])
"""


@pytest.mark.parametrize("mode, problem", [("copy", "the hole was not filled"),
                                           ("outside", "pixels outside the mask changed"),
                                           ("silent", "exit 0 but no output file")])
def test_the_checks_catch_a_bad_program(tmp_path, mode, problem):
    """A program that copies its input, touches a pixel outside the mask or writes nothing fails its fill check."""
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE.format(main=str(ROOT / "main.py")))
    result = build.smoke([sys.executable, str(fake), mode], models=["telea"], self_test=False, log=lambda line: None)
    assert [(c["check"], c["ok"], c["problem"]) for c in result] == [("models", True, None),
                                                                    ("inpaint telea", False, problem)]


def test_the_model_check_catches_lost_weights(tmp_path):
    """A bundle that lost a model's weights still lists the model: the check reads the weights column."""
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE.format(main=str(ROOT / "main.py")))
    result = build.smoke([sys.executable, str(fake), "lost"], models=[], self_test=False, log=lambda line: None)
    assert result[0]["check"] == "models" and not result[0]["ok"]
    assert result[0]["problem"] == "weights missing: telea"
