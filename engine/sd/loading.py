"""Loading a Stable Diffusion checkpoint as a user has it: a diffusers folder or one ``.safetensors`` file.

Diffusers folders load with each part's ``from_pretrained`` on the local path (safetensors only, nothing fetched).
A single file in the original key layout is converted part by part with diffusers' own converters
(``diffusers.loaders.single_file_utils``: UNet, VAE, CLIP and OpenCLIP text encoders) into networks built from the
configs shipped in ``resources/configs/sd/<type>/`` (the type from ``engine.sd.checkpoint``), on the meta device and
filled in place (``load_state_dict(assign=True)``: no random initialisation of gigabytes first, one copy in memory).
Every key the network needs must come from the file: a missing one is an error naming the part, never a silently
random weight. Single files carry no tokenizer: CLIP's byte-pair vocabulary ships in
``resources/configs/clip/bpe_simple_vocab_16e6.txt.gz`` (from the open-clip-torch wheel, MIT) and becomes a real
``CLIPTokenizer`` here (pad token ``<|endoftext|>`` for OpenAI CLIP, ``!`` for OpenCLIP, as the models were trained).

``INPAINT_STUDIO_SD_CONFIGS`` (or ``CONFIGS_DIR``) points at another folder of per-type config folders: the tests'
tiny models use it, and so can a user with an unusual architecture.
"""
from __future__ import annotations

import gzip
import json
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from engine.sd.checkpoint import (CheckpointError, Kind, config_folder, detect_folder, detect_single,
                                  weights_file)
from engine.weights import RESOURCES

CLIP_VOCAB = RESOURCES / "configs" / "clip" / "bpe_simple_vocab_16e6.txt.gz"


# --- tokenizer from the shipped vocabulary -----------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


@lru_cache(maxsize=1)
def _vocab_files() -> tuple[str, str]:
    """vocab.json and merges.txt (Hugging Face's CLIPTokenizer files) made once per process from the BPE list:
    the 256 byte symbols, the same with the end-of-word mark, one token per merge, then the two special tokens."""
    lines = gzip.open(CLIP_VOCAB).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(tempfile.mkdtemp(prefix="inpaint-studio-clip-"))
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return str(folder / "vocab.json"), str(folder / "merges.txt")


@lru_cache(maxsize=4)
def clip_tokenizer(pad_token: str = "<|endoftext|>", max_length: int = 77):
    """A real CLIPTokenizer from the shipped vocabulary (49408 tokens); one per setting per process (read-only)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_files()
    return CLIPTokenizer(vocab, merges, pad_token=pad_token, model_max_length=max_length)


def _tokenizer(folder: Path, sub: str):
    """The folder's own tokenizer when it has one, else the shipped vocabulary with the folder's settings."""
    from transformers import CLIPTokenizer

    part = folder / sub
    if (part / "vocab.json").is_file() and (part / "merges.txt").is_file():
        return CLIPTokenizer.from_pretrained(part, local_files_only=True)
    cfg = {}
    if (part / "tokenizer_config.json").is_file():
        cfg = json.loads((part / "tokenizer_config.json").read_text())
    return clip_tokenizer(str(cfg.get("pad_token", "<|endoftext|>")), int(cfg.get("model_max_length", 77)))


# --- building networks from a state dict without random initialisation ----------------------------------------
def _assign(model: torch.nn.Module, state: dict, part: str, name: str, dtype: torch.dtype) -> torch.nn.Module:
    """Fill a meta-device ``model`` with ``state`` (strict: every parameter must be there), cast to ``dtype``."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    if missing:
        raise CheckpointError(f"{name}: the {part} weights do not fit ({len(missing)} missing, e.g. {missing[0]})")
    bad = [k for k in want if tuple(state[k].shape) != tuple(want[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{name}: the {part} weight {k} is {tuple(state[k].shape)}, expected "
                              f"{tuple(want[k].shape)}")
    state = {k: (state[k].to(dtype) if state[k].is_floating_point() else state[k]) for k in want}
    model.load_state_dict(state, strict=True, assign=True)
    for mod_name, module in model.named_modules():  # non-persistent buffers are not in any state dict
        for buf_name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:
                if buf_name != "position_ids":
                    raise CheckpointError(f"{name}: cannot initialise {mod_name}.{buf_name}")
                module.register_buffer(buf_name, torch.arange(buf.shape[-1]).expand(buf.shape), persistent=False)
    return model.eval().requires_grad_(False)


def _clip(cls, config_dir: Path, state: dict, part: str, name: str, dtype: torch.dtype):
    from transformers import CLIPTextConfig

    try:
        config = CLIPTextConfig.from_pretrained(config_dir, local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{name}: could not read the {part} config ({_first_line(exc)})") from None
    with torch.device("meta"):
        model = cls(config)
    if not any(k.startswith("text_model.") for k in model.state_dict()):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    return _assign(model, state, part, name, dtype)


def load_single_file(path: Path, kind: Kind, dtype: torch.dtype = torch.float32) -> dict:
    """The parts of a single-file checkpoint: {"unet", "vae", "text_encoders", "tokenizers", "scheduler_config"}."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)
    from safetensors.torch import load_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    name = path.name
    cfg = config_folder(kind)
    try:
        ckpt = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{name}: not a readable safetensors file ({_first_line(exc)})") from None
    unet_cfg = UNet2DConditionModel.load_config(cfg, subfolder="unet")
    vae_cfg = AutoencoderKL.load_config(cfg, subfolder="vae")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        vae = AutoencoderKL.from_config(vae_cfg)
    unet = _assign(unet, _convert(convert_ldm_unet_checkpoint, ckpt, unet_cfg, "UNet", name), "UNet", name, dtype)
    vae = _assign(vae, _convert(convert_ldm_vae_checkpoint, ckpt, vae_cfg, "VAE", name), "VAE", name, dtype)
    if kind.arch == "sd2":
        encoders = [_clip(CLIPTextModel, cfg / "text_encoder", _open_clip(ckpt, "cond_stage_model.model.", cfg /
                          "text_encoder", False), "text encoder", name, dtype)]
    else:
        encoders = [_clip(CLIPTextModel, cfg / "text_encoder", convert_ldm_clip_checkpoint(ckpt), "text encoder",
                          name, dtype)]
    tokenizers = [_tokenizer(cfg, "tokenizer")]
    if kind.arch == "sdxl":
        encoders.append(_clip(CLIPTextModelWithProjection, cfg / "text_encoder_2",
                              _open_clip(ckpt, "conditioner.embedders.1.model.", cfg / "text_encoder_2", True),
                              "second text encoder", name, dtype))
        tokenizers.append(_tokenizer(cfg, "tokenizer_2"))
    del ckpt
    sched = json.loads((cfg / "scheduler" / "scheduler_config.json").read_text())
    sched["prediction_type"] = kind.prediction
    latent = kind.native // (2 ** (len(vae.config.block_out_channels) - 1))
    if latent != unet.config.sample_size:  # SD 2.x at 512 with the 768 config
        unet.register_to_config(sample_size=latent)
    return dict(unet=unet, vae=vae, text_encoders=encoders, tokenizers=tokenizers, scheduler_config=sched)


def _convert(fn, ckpt: dict, config, part: str, name: str) -> dict:
    try:
        return fn(ckpt, dict(config))
    except (KeyError, IndexError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{name}: the {part} weights are not in the expected layout ({_first_line(exc)})") \
            from None


def _open_clip(ckpt: dict, prefix: str, config_dir: Path, projection: bool) -> dict:
    """OpenCLIP text-encoder weights (``prefix``) as CLIPTextModel keys: fused q/k/v split, the layers the config
    keeps (SD 2.x uses the penultimate layer: its config has one layer fewer than the file), the projection
    transposed (SDXL's second encoder) or dropped (SD 2.x)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    layers = int(json.loads((config_dir / "config.json").read_text())["num_hidden_layers"])
    width = ckpt[prefix + "token_embedding.weight"].shape[1]
    out = {}
    for diffusers_key, ldm_key in DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"].items():
        if prefix + ldm_key in ckpt:
            v = ckpt[prefix + ldm_key]
            out[diffusers_key] = v.T.contiguous() if ldm_key == "text_projection" else v
    renames = DIFFUSERS_TO_LDM_MAPPING["openclip"]["transformer"]
    for key, v in ckpt.items():
        if not key.startswith(prefix + "transformer.resblocks."):
            continue
        rest = key[len(prefix + "transformer."):]
        if int(rest.split(".")[1]) >= layers:
            continue
        for new, old in renames.items():
            rest = rest.replace(old, new)
        if rest.endswith((".in_proj_weight", ".in_proj_bias")):
            base, what = rest.rsplit(".in_proj_", 1)
            suffix = "weight" if what == "weight" else "bias"
            for i, qkv in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{base}.{qkv}.{suffix}"] = v[i * width:(i + 1) * width].clone()
        else:
            out[rest] = v
    if not projection:
        out.pop("text_projection.weight", None)
    return out


def _read_weights(part: Path) -> dict:
    """A diffusers component's state dict from its safetensors file(s) (a sharded index included)."""
    from safetensors.torch import load_file

    w = weights_file(part)
    files = [w]
    if w.name.endswith(".index.json"):
        files = sorted({part / f for f in json.loads(w.read_text()).get("weight_map", {}).values()})
    state = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as exc:
            raise CheckpointError(f"{part.parent.name}/{part.name}/{f.name}: not a readable safetensors file "
                                  f"({_first_line(exc)})") from None
    return state


def load_folder(path: Path, kind: Kind, dtype: torch.dtype = torch.float32) -> dict:
    """The parts of a diffusers folder (safetensors only, local files only), built the same way as single files."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    name = path.name
    nets = {}
    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        try:
            config = cls.load_config(path, subfolder=sub, local_files_only=True)
            with torch.device("meta"):
                net = cls.from_config(config)
        except Exception as exc:
            raise CheckpointError(f"{name}: could not load {sub}/ ({_first_line(exc)})") from None
        nets[sub] = _assign(net, _read_weights(path / sub), sub + "/", name, dtype)
    encoders = [_clip(CLIPTextModel, path / "text_encoder", _read_weights(path / "text_encoder"), "text_encoder/",
                      name, dtype)]
    tokenizers = [_tokenizer(path, "tokenizer")]
    if kind.arch == "sdxl":
        encoders.append(_clip(CLIPTextModelWithProjection, path / "text_encoder_2",
                              _read_weights(path / "text_encoder_2"), "text_encoder_2/", name, dtype))
        tokenizers.append(_tokenizer(path, "tokenizer_2"))
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    return dict(unet=nets["unet"], vae=nets["vae"], text_encoders=encoders, tokenizers=tokenizers,
                scheduler_config=sched)


def detect(path: str | Path) -> Kind:
    """The type of a folder or single file (CheckpointError otherwise)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"Stable Diffusion checkpoint not found: {p}")
    return detect_folder(p) if p.is_dir() else detect_single(p)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
