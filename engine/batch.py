"""The command line's jobs: which image goes with which mask, sketch and output, and everything about them that
can be checked before any model loads (engine/cli.py runs them).

The batch contract (README, "Guarantees"):
- every image file of a folder is attempted; one that cannot be used is reported in one line naming it, and the
  rest are processed; the exit code says whether any failed, and a summary line ends the batch;
- two inputs never write the same output (``a.jpg`` and ``a.png`` would both be ``out/a.png``): refused before any
  work, naming both; an output never replaces an input, and results never land in an input folder;
- an existing output is replaced only with ``--overwrite``; ``--resume`` skips the outputs that are already there
  and valid (a readable image of the input's size) and redoes the others;
- what can be known before work is checked before work: files exist, headers are readable and not bombs, masks
  match their images, the output suffix is one we write, and the output folder can be written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.api import InpaintError
from engine.imageio import (ImageError, OPEN_SUFFIXES, check_output, list_images, load_image, probe_image)


class UsageError(Exception):
    """Bad usage of the command line (exit code 2)."""


@dataclass
class Job:
    image: Path
    mask: Path | None  # None: the folder has no mask for this image (``problem`` says so)
    sketch: Path | None
    out: Path
    problem: str | None = None  # why this image cannot be filled, found before any work
    done: bool = False  # --resume: a valid output is already there
    size: tuple[int, int] | None = None  # (width, height) of the image as shown, once probed


@dataclass
class Plan:
    jobs: list[Job]
    folder: bool  # --image named a folder: per-image failures are reported and the batch goes on
    notes: list[str]  # warnings found while planning (one line each)


def _as_folder(text: str, path: Path) -> bool:
    return path.is_dir() or text.endswith(("/", os.sep))


def plan(image: str, mask: str, sketch: str | None, out: str) -> Plan:
    """The jobs for ``--image/--mask/--sketch/--out`` (files, or folders matched by file name)."""
    img, msk, out_path = Path(image), Path(mask), Path(out)
    skt = Path(sketch) if sketch else None
    for path, what in ((img, "--image"), (msk, "--mask"), (skt, "--sketch")):
        if path is not None and not path.exists():
            raise UsageError(f"{what} {path}: no such file or folder")
    if not img.is_dir():
        if msk.is_dir() or (skt is not None and skt.is_dir()):
            raise UsageError("--image is a file, so --mask and --sketch must be files too")
        if _as_folder(out, out_path):
            out_path = out_path / (img.stem + ".png")
        return Plan([Job(img, msk, skt, out_path)], folder=False, notes=[])
    if not msk.is_dir() or (skt is not None and not skt.is_dir()):
        raise UsageError("--image is a folder, so --mask (and --sketch) must be folders with the same file names")
    if out_path.exists() and not out_path.is_dir():
        raise UsageError(f"--out {out_path}: must be a folder when --image is a folder")
    for folder, what in ((img, "--image"), (msk, "--mask"), (skt, "--sketch")):
        if folder is not None and _same(out_path, folder):
            raise UsageError(f"--out {out_path} is the {what} folder: results would mix with the inputs; "
                             "choose another folder")
    files = list_images(img)
    others = sorted(p.name for p in img.iterdir() if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() not in OPEN_SUFFIXES)
    if not files:
        raise UsageError(f"--image {img}: the folder has no image files ({', '.join(OPEN_SUFFIXES)})")
    notes = []
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        notes.append(f"{img}: skipped {len(others)} file(s) that are not images by name: {shown}")
    jobs = []
    for f in files:
        m = msk / f.name
        s = skt / f.name if skt is not None else None
        job = Job(f, m if m.is_file() else None, s if s is not None and s.is_file() else None,
                  out_path / (f.stem + ".png"))
        if job.mask is None:
            job.problem = f"no mask named {f.name} in {msk}"
        jobs.append(job)
    return Plan(jobs, folder=True, notes=notes)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _key(path: Path) -> str:
    """Paths that are one file on a case-insensitive disk (Windows, macOS, a FAT card) have one key."""
    return os.path.normcase(str(path.resolve())).casefold()


def check_outputs(p: Plan, overwrite: bool, resume: bool) -> list[str]:
    """Refuse (UsageError / ImageError) what would lose or mix up files, before any work; with ``resume`` mark the
    jobs whose output is already valid as done. Returns warning lines (outputs --resume will redo)."""
    inputs: dict[str, str] = {}
    for j in p.jobs:
        for path, role in ((j.image, "image"), (j.mask, "mask"), (j.sketch, "sketch")):
            if path is not None:
                inputs.setdefault(_key(path), f"the {role} {path}" if role == "image" else
                                  f"the {role} of {j.image.name}")
    writers: dict[str, Job] = {}
    for j in p.jobs:
        key = _key(j.out)
        if key in inputs:
            what = inputs[key]
            if what == f"the image {j.image}":
                raise UsageError(f"--out {j.out} is the input image itself; choose another name")
            raise UsageError(f"--out {j.out} is {what}; choose another name")
        if key in writers:
            raise UsageError(f"{writers[key].image} and {j.image} would both be written to {j.out}; rename one of "
                             "them (outputs are NAME.png)")
        writers[key] = j
    notes: list[str] = []
    existing = [j for j in p.jobs if j.out.exists() or j.out.is_symlink()]
    if existing and not (overwrite or resume):
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        hint = " or --resume to keep the valid ones" if p.folder else ""
        raise UsageError(f"{existing[0].out} exists{more}; pass --overwrite to replace it{hint}")
    for j in existing:
        if j.out.is_dir():
            raise UsageError(f"--out {j.out}: is a folder")
    folders_checked: set[str] = set()
    for j in p.jobs:  # suffix and a writable folder: once per folder (a batch writes into one)
        folder = str(j.out.parent)
        if folder not in folders_checked or not p.folder:
            folders_checked.add(folder)
            check_output(j.out, j.size)
    if resume:
        for j in existing:
            why = _invalid_output(j)
            if why is None:
                j.done = True
            else:
                notes.append(f"{j.out} will be redone: {why}")
    return notes


def _invalid_output(j: Job) -> str | None:
    """Why an existing output is not the finished result of ``j`` (None: it is: readable, the image's size)."""
    try:
        loaded = load_image(j.out)
    except InpaintError as exc:
        return str(exc).removeprefix(f"{j.out}: ")
    try:
        size = j.size or probe_image(j.image).size
    except InpaintError:
        return None  # the input itself is unreadable now: nothing to redo it from, keep what is there
    if loaded.info["size"] != size:
        w, h = loaded.info["size"]
        return f"it is {w}x{h}, the image {size[0]}x{size[1]}"
    return None


def probe_jobs(p: Plan) -> None:
    """Header checks of every file of every job (no decoding): a job that cannot run gets its ``problem``."""
    for j in p.jobs:
        if j.problem is not None:
            continue
        try:
            j.size = probe_image(j.image).size
            for path, what in ((j.mask, "mask"), (j.sketch, "sketch")):
                if path is None:
                    continue
                w, h = probe_image(path).size
                if (w, h) != j.size and (h, w) != j.size:  # a quarter turn may hide in a PNG's late EXIF chunk
                    raise ImageError(f"{path}: {what} is {w}x{h} but the image is {j.size[0]}x{j.size[1]}")
        except InpaintError as exc:
            j.problem = str(exc)


@dataclass
class Tally:
    written: int = 0
    done: int = 0  # skipped by --resume
    failed: int = 0
    total: int = 0

    def line(self, interrupted: bool = False) -> str:
        left = self.total - self.written - self.done - self.failed
        parts = [f"{self.written} written"]
        if self.done:
            parts.append(f"{self.done} already done")
        parts.append(f"{self.failed} failed")
        if interrupted and left:
            parts.append(f"{left} not attempted")
        return f"{'interrupted' if interrupted else 'batch done'}: {', '.join(parts)} (of {self.total})"


def run(p: Plan, fill: Callable[[Job], None], fail: Callable[[Job, str], None],
        skip: Callable[[Job], None], tally: Tally) -> None:
    """Every job once, in order: ``fill`` it, or ``skip`` it (done), or ``fail`` it with its one-line reason. In a
    folder batch a failure is reported and the batch goes on; for a single file it propagates."""
    tally.total = len(p.jobs)
    for j in p.jobs:
        if j.done:
            skip(j)
            tally.done += 1
            continue
        try:
            if j.problem is not None:
                raise ImageError(j.problem)
            fill(j)
            tally.written += 1
        except InpaintError as exc:
            if not p.folder:
                raise
            tally.failed += 1
            fail(j, str(exc))
        except Exception as exc:  # a model's bug on one image: reported like any failure, the batch goes on
            if not p.folder or os.environ.get("INPAINT_STUDIO_DEBUG"):
                raise
            tally.failed += 1
            first = str(exc).splitlines()[0] if str(exc).strip() else ""
            fail(j, f"internal error ({type(exc).__name__}: {first})")
