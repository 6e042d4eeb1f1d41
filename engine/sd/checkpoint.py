"""What a Stable Diffusion checkpoint on disk is, told from its keys and shapes without loading it (no torch).

A single ``.safetensors`` file starts with an 8-byte little-endian length and a JSON header naming every tensor
with its dtype, shape and byte range (the safetensors format); ``read_header`` parses that and checks that the
file holds all the bytes the header promises (a download that stopped half way is one clear line). The type comes
from the original (CompVis / Stability "LDM") key layout:

- ``model.diffusion_model.input_blocks.0.0.weight`` is the UNet's first convolution: 4 input channels for an
  ordinary checkpoint, 9 for an inpainting one (latent + mask + masked-image latent, Rombach et al. 2022, Sec. 4.5);
- the text encoder tells the generation: ``cond_stage_model.transformer.*`` (OpenAI CLIP ViT-L) = SD 1.x,
  ``cond_stage_model.model.*`` (OpenCLIP ViT-H) = SD 2.x, ``conditioner.embedders.0/1`` (CLIP-L + OpenCLIP bigG) =
  SDXL (Podell et al. 2023); ``conditioner.embedders.0.model`` alone is the SDXL refiner;
- v-prediction (Salimans & Ho 2022) cannot be read from the weights: a ``v_pred`` key (as ComfyUI writes it), the
  Stability ``modelspec.architecture`` metadata, an A1111-style ``<name>.yaml`` next to the file with
  ``parameterization: "v"``, or the file name (SD 2.x "base" / "512" = epsilon at 512) decide, SD 2.x non-inpainting
  defaulting to the 768 v-model;
- LCM / Turbo / Lightning / Hyper distillations are told by name only: they get their few steps and low guidance.

A diffusers folder is read from its JSON configs (``model_index.json``, ``unet/config.json``, ...). Pickled files
(``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are never opened: loading them can run arbitrary code.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.api import InpaintError
from engine.weights import RESOURCES

CONFIGS_DIR = RESOURCES / "configs" / "sd"  # one diffusers-layout config folder per type (no weights)
CONFIGS_ENV = "INPAINT_STUDIO_SD_CONFIGS"
UNET = "model.diffusion_model."
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER = 100 * 1024 * 1024
FLAVOURS = ("lcm", "turbo", "lightning", "hyper")


class CheckpointError(InpaintError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Kind:
    """The detected type of a checkpoint."""

    arch: str  # "sd1" | "sd2" | "sdxl"
    inpainting: bool = False
    prediction: str = "epsilon"  # "epsilon" | "v_prediction"
    native: int = 512  # the side it was trained at
    flavour: str = ""  # "" | "lcm" | "turbo" | "lightning" | "hyper"

    @property
    def label(self) -> str:
        name = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}[self.arch]
        if self.arch == "sd2" and not self.inpainting:
            name += " 768 v" if self.prediction == "v_prediction" else " 512"
        if self.inpainting:
            name += " inpainting"
        if self.flavour:
            name += f" {self.flavour.upper() if self.flavour == 'lcm' else self.flavour.capitalize()}"
        return name

    @property
    def config_name(self) -> str:
        """The folder under resources/configs/ with this type's diffusers configs."""
        return self.arch + ("-inpainting" if self.inpainting else "")

    @property
    def latent_rgb(self) -> str:
        return "sdxl" if self.arch == "sdxl" else "sd1"


def configs_root() -> Path:
    """Where the per-type configs for single files are: ``INPAINT_STUDIO_SD_CONFIGS`` or the shipped ones."""
    env = os.environ.get(CONFIGS_ENV, "").strip()
    return Path(env).expanduser() if env else CONFIGS_DIR


def config_folder(kind: "Kind | str") -> Path:
    name = kind if isinstance(kind, str) else kind.config_name
    folder = configs_root() / name
    if not (folder / "unet" / "config.json").is_file():
        raise CheckpointError(f"no model configs for {name} at {folder}")
    return folder


def config_native(name: str) -> int:
    """The image side a type's shipped config describes (UNet sample size x the VAE's downscale)."""
    folder = config_folder(name)
    unet = _json(folder / "unet" / "config.json")
    vae = _json(folder / "vae" / "config.json")
    return int(unet.get("sample_size", 64)) * 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)


# --- safetensors header -------------------------------------------------------------------------------------
def read_header(path: str | Path) -> tuple[dict, dict]:
    """(tensors {name: {"dtype", "shape", "data_offsets"}}, metadata) of a safetensors file; CheckpointError when the
    file is not safetensors or is shorter than its header says."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path.name}: not a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or n > size - 8:
                raise CheckpointError(f"{path.name}: not a safetensors file, or cut short (header of {n} bytes "
                                      f"in a file of {size})")
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path.name}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: not a safetensors file (its header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    end = max((int(v["data_offsets"][1]) for v in header.values()
               if isinstance(v, dict) and "data_offsets" in v), default=0)
    have = size - 8 - n
    if end > have:
        raise CheckpointError(f"{path.name}: truncated, {_mb(have)} of {_mb(end)} of weights present (a download "
                              f"that did not finish?); download it again")
    return header, meta if isinstance(meta, dict) else {}


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def _shape(header: dict, key: str) -> list[int] | None:
    v = header.get(key)
    return list(v["shape"]) if isinstance(v, dict) and "shape" in v else None


def _flavour(name: str) -> str:
    low = name.lower()
    return next((f for f in FLAVOURS if f in low), "")


def refuse_pickle(path: str | Path) -> str:
    """The one line for a pickled checkpoint."""
    p = Path(path)
    return (f"{p.name}: {p.suffix} files are Python pickles that can run code when loaded, so they are never "
            f"opened; use the .safetensors version of this model (or .onnx for LaMa / MI-GAN)")


def detect_single(path: str | Path) -> Kind:
    """The type of a single-file checkpoint in the original key layout; CheckpointError with one line otherwise."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(refuse_pickle(path))
    header, meta = read_header(path)
    return kind_from_keys(header, meta, path)


def kind_from_keys(header: dict, meta: dict, path: Path) -> Kind:
    keys = header.keys()
    name = path.name
    if not any(k.startswith(UNET) for k in keys):
        raise CheckpointError(f"{name}: {_what_else(keys)}")
    if any(k.startswith("control_model.") for k in keys):
        raise CheckpointError(f"{name}: a ControlNet, not a checkpoint (ControlNets are not supported)")
    if "edm_mean" in keys or any(k.startswith(UNET + "joint_blocks") for k in keys):
        raise CheckpointError(f"{name}: not Stable Diffusion 1.x, 2.x or XL (only those load)")
    conv_in = _shape(header, UNET + "input_blocks.0.0.weight")
    if conv_in is None or len(conv_in) != 4:
        raise CheckpointError(f"{name}: the UNet's input convolution is missing; not a Stable Diffusion checkpoint")
    channels = conv_in[1]
    if channels == 8:
        raise CheckpointError(f"{name}: an InstructPix2Pix checkpoint (8 input channels); not supported")
    if channels not in (4, 9):
        raise CheckpointError(f"{name}: a UNet with {channels} input channels; only 4 (ordinary) or 9 (inpainting) "
                              f"load")
    inpainting = channels == 9
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        arch = "sdxl"
        if not any(k.startswith("conditioner.embedders.0.transformer.") for k in keys):
            raise CheckpointError(f"{name}: the SDXL checkpoint lacks its first text encoder (CLIP ViT-L)")
    elif any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        raise CheckpointError(f"{name}: an SDXL refiner; it refines finished images and cannot fill a hole: use an "
                              f"SDXL base or inpainting checkpoint")
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        arch = "sd2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in keys):
        arch = "sd1"
    else:
        raise CheckpointError(f"{name}: no text encoder inside (a UNet-only file); use a full checkpoint")
    if not any(k.startswith("first_stage_model.decoder.") for k in keys):
        raise CheckpointError(f"{name}: no VAE inside; use a full checkpoint (UNet, VAE and text encoder)")
    flavour = _flavour(name)
    prediction = "v_prediction" if "v_pred" in keys else "epsilon"
    native = config_native(arch + ("-inpainting" if inpainting else ""))
    if arch == "sd2" and not inpainting:
        prediction, big = _sd2_prediction(meta, path, prediction)
        native = native if big else native * 2 // 3  # the shipped SD 2.x config is the 768 one
    return Kind(arch, inpainting, prediction, native, flavour)


def _sd2_prediction(meta: dict, path: Path, prediction: str) -> tuple[str, bool]:
    """(prediction type, the 768 model) of an SD 2.x checkpoint."""
    spec = str(meta.get("modelspec.architecture", "")).lower()
    if "768-v" in spec or prediction == "v_prediction":
        return "v_prediction", True
    if "512" in spec:
        return "epsilon", False
    yaml = path.with_suffix(".yaml")
    if yaml.is_file():
        try:
            text = yaml.read_text(errors="replace")[:20000]
        except OSError:
            text = ""
        if "parameterization" in text:
            return ("v_prediction", True) if ('"v"' in text or "'v'" in text or ": v" in text) else ("epsilon", False)
    low = path.name.lower()
    if "base" in low or "512" in low:
        return "epsilon", False
    return "v_prediction", True


def _what_else(keys) -> str:
    """A plain sentence for safetensors files that are not full checkpoints."""
    ks = list(keys)
    if any("lora_" in k or ".lora_down" in k or "lora_A" in k for k in ks):
        return "a LoRA, not a checkpoint (LoRAs are not supported yet)"
    if any(k in ("emb_params", "string_to_param", "clip_l", "clip_g") for k in ks) and len(ks) <= 4:
        return "a textual-inversion embedding, not a checkpoint"
    if any(k.startswith(("encoder.down.", "decoder.up.", "first_stage_model.")) for k in ks):
        return "a VAE alone, not a full checkpoint"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in ks):
        return "a UNet alone in diffusers layout; put the whole diffusers folder (model_index.json, unet/, ...) " \
               "in the models folder instead"
    if any(k.startswith(("double_blocks.", "joint_blocks.", "model.diffusion_model.double_blocks")) for k in ks):
        return "not Stable Diffusion 1.x, 2.x or XL (only those load)"
    return "not a Stable Diffusion checkpoint (no model.diffusion_model.* weights)"


# --- diffusers folders ----------------------------------------------------------------------------------------
def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent.name}/{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.parent.name}/{path.name}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.parent.name}/{path.name}: not a JSON object")
    return data


def weights_file(part: Path) -> Path:
    """The safetensors weights of a diffusers component folder (plain, fp16 variant or sharded index);
    CheckpointError when there are only pickled ``.bin`` files or nothing."""
    for pattern in ("*.safetensors", "*.safetensors.index.json"):
        found = sorted(p for p in part.glob(pattern) if not p.name.startswith("."))
        if found:
            plain = [p for p in found if ".fp16." not in p.name]
            return (plain or found)[0]
    if list(part.glob("*.bin")):
        raise CheckpointError(f"{part.parent.name}/{part.name}/ holds only .bin weights (Python pickles, never "
                              f"opened); get the .safetensors files of this model")
    raise CheckpointError(f"{part.parent.name}/{part.name}/ has no weights file")


def detect_folder(path: str | Path) -> Kind:
    """The type of a diffusers pipeline folder; CheckpointError with one line when a part is missing or broken."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"{path.name}: not a diffusers folder (model_index.json is missing)")
    index = _json(path / "model_index.json")
    has_te2 = "text_encoder_2" in index and index["text_encoder_2"] and index["text_encoder_2"][0]
    has_te = "text_encoder" in index and index["text_encoder"] and index["text_encoder"][0]
    if has_te2 and not has_te:
        raise CheckpointError(f"{path.name}: an SDXL refiner; it refines finished images and cannot fill a hole")
    parts = ["unet", "vae", "text_encoder", "scheduler"] + (["text_encoder_2"] if has_te2 else [])
    missing = [p + "/" for p in parts if not (path / p).is_dir()]
    if missing:
        raise CheckpointError(f"{path.name}: the diffusers folder lacks {', '.join(missing)}")
    unet = _json(path / "unet" / "config.json")
    vae = _json(path / "vae" / "config.json")
    te = _json(path / "text_encoder" / "config.json")
    sched = _json(path / "scheduler" / "scheduler_config.json")
    for part in [p for p in parts if p != "scheduler"]:
        w = weights_file(path / part)
        if w.suffix == ".safetensors":
            try:
                read_header(w)
            except CheckpointError as exc:
                raise CheckpointError(f"{path.name}/{part}/{exc}") from None
    channels = int(unet.get("in_channels", 4))
    if channels not in (4, 9):
        raise CheckpointError(f"{path.name}: a UNet with {channels} input channels; only 4 or 9 load")
    arch = "sdxl" if has_te2 or unet.get("addition_embed_type") == "text_time" else (
        "sd2" if te.get("hidden_act") == "gelu" else "sd1")
    scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    native = int(unet.get("sample_size", 64)) * scale
    prediction = str(sched.get("prediction_type", "epsilon"))
    if prediction not in ("epsilon", "v_prediction"):
        raise CheckpointError(f"{path.name}: prediction type {prediction!r} is not supported")
    return Kind(arch, channels == 9, prediction, native, _flavour(path.name))


# --- the models folder ------------------------------------------------------------------------------------------
def is_lgp_folder(path: Path) -> bool:
    return (path / "lgp.safetensors").is_file() or path.name.endswith("sketch-lgp")


def walk_models(folder: Path, max_depth: int = 3):
    """(diffusers folders, files) under ``folder``: a folder with model_index.json is one model (not descended);
    LGP folders and hidden entries are skipped."""
    folders, files = [], []
    root_depth = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        depth = len(here.parts) - root_depth
        keep = []
        for d in sorted(dirnames):
            sub = here / d
            if d.startswith(".") or is_lgp_folder(sub):
                continue
            if (sub / "model_index.json").is_file():
                folders.append(sub)
            elif depth + 1 < max_depth:
                keep.append(d)
        dirnames[:] = keep
        files += [here / f for f in sorted(filenames) if not f.startswith(".")]
    return folders, files


def lgp_dir_for(path: str | Path) -> Path:
    """Where the LGP of a checkpoint lives by default: ``<folder>/sketch-lgp`` or ``<file stem>.sketch-lgp/``."""
    p = Path(path).expanduser()
    return p / "sketch-lgp" if p.is_dir() else p.with_name(p.stem + ".sketch-lgp")
