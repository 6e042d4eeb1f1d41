"""Decoding the hole's tokens: MaskGIT's parallel decoding (variant 1) and raster-order sampling (variant 2).

Both are generators in the manner of k-diffusion's samplers: they yield one ``TokenStep`` per iteration (MaskGIT)
or per finished row of tokens (autoregressive) and return the final ids. Sampling noise is drawn on the CPU from
the caller's ``torch.Generator`` and moved to the logits' device (``engine.device`` convention), so a seed gives
the same draws on any device.

MaskGIT (Chang, Zhang, Jiang, Liu & Freeman, CVPR 2022, sec. 3.2 and Algorithm in google-research/maskgit
``libml/parallel_decode.py``), written from the paper; at iteration t = 0 .. T-1:

1. predict: logits at the positions still MASK; sample an id at each (temperature, top-k, top-p); known ids
   stay;
2. schedule: n_t = floor(n_0 * gamma((t + 1) / T)) tokens stay masked, gamma(r) = cos(pi r / 2) (eq. 5),
   where n_0 counts the tokens masked *at the start* (the hole), never all positions (counted from all
   positions, a small hole would reveal one token per iteration); n_t is kept in [1, unknown - 1] so every
   iteration reveals at least one token and one stays for the next, and the last iteration keeps all samples;
3. re-mask the n_t least confident new samples: confidence = log p(sampled id) + s (1 - r) g, g ~ Gumbel(0, 1),
   the noise annealed to 0 as r -> 1 (``confidence_noise`` s, the paper's choice temperature 4.5); known tokens
   have confidence +inf, so they are never re-masked.

T is capped at n_0 (more iterations than hole tokens would only repeat one): a 4-token hole takes 4 passes.

Autoregressive (the seed's variant 2): the encoder reads the grid once; the decoder writes the hole's tokens one
by one in raster order after START, each step fed the id just written and the position of the next token
(``transformer.AutoregressiveTransformer``); the decoder is re-run on the prefix each step (no key/value cache:
at most 64 steps of a 3-block decoder).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator

import torch

from engine.token.transformer import raster_order


@dataclass
class TokenStep:
    step: int  # 1-based
    total: int
    ids: torch.Tensor  # B x N: decided ids, MASK where still unknown
    draft: torch.Tensor  # B x N: ``ids`` with this step's samples where still unknown (what a preview draws)
    calls: int  # network evaluations so far


def gumbel(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise -log(-log U), drawn on the CPU generator, moved to ``like``'s device."""
    u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(like.device, torch.float32)


def sample_ids(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None,
               top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """K x V logits -> (ids K, log p(id) K). Categorical sampling by the Gumbel-max trick over the top ``top_k``
    logits (0 = all), then over the nucleus: the fewest most likely ids whose probability sums to ``top_p`` (1 =
    all; Holtzman, Buys, Du, Forbes & Choi, ICLR 2020, "The Curious Case of Neural Text Degeneration", sec. 3.1),
    divided by ``temperature`` (0 = argmax). The nucleus cuts the long tail a model trained with label smoothing
    keeps (a tenth of the mass over thousands of codes: one draw in ten there is a stray token) while keeping as
    many ids as the position is really unsure about, which a fixed k cannot. log p is the model's own (the full
    softmax): it is MaskGIT's confidence, and under a truncation every position whose nucleus is one id would tie
    at log 1."""
    logits = logits.float()
    logp_all = logits.log_softmax(-1)
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        srt, order = logits.sort(-1, descending=True)
        probs = srt.softmax(-1)
        outside = probs.cumsum(-1) - probs >= top_p  # the mass before an id already reaches top_p; never the first
        logits = logits.scatter(-1, order, srt.masked_fill(outside, float("-inf")))
    if temperature <= 0:
        ids = logits.argmax(-1)
    else:
        ids = (logits / temperature + gumbel(logits.shape, generator, logits)).argmax(-1)
    return ids, logp_all.gather(-1, ids[..., None])[..., 0]


def mask_schedule(ratio: float) -> float:
    """gamma(r) = cos(pi r / 2): the share of the starting hole still masked after a fraction r of the passes."""
    return math.cos(math.pi * ratio / 2)


def maskgit_decode(logits_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ids: torch.Tensor,
                   mask_id: int, iterations: int = 12, temperature: float = 1.0, top_k: int = 0,
                   confidence_noise: float = 4.5, generator: torch.Generator | None = None, top_p: float = 1.0
                   ) -> Generator[TokenStep, None, torch.Tensor]:
    """ids B x N with ``mask_id`` in the hole -> ids with every hole token sampled (yields a TokenStep per pass).
    ``logits_at(ids, unknown)`` returns the K x V logits at ``unknown``'s True positions (row-major order)."""
    ids = ids.clone()
    n0 = (ids == mask_id).sum(1)  # tokens masked at the start, per image
    total = max(1, min(int(iterations), int(n0.max())))
    if int(n0.max()) == 0:
        return ids
    for t in range(total):
        unknown = ids == mask_id
        logits = logits_at(ids, unknown)
        new, logp = sample_ids(logits, temperature, top_k, generator, top_p)
        sampled = ids.clone()
        sampled[unknown] = new
        if t == total - 1:
            ids = sampled
            yield TokenStep(t + 1, total, ids, sampled, t + 1)
            break
        ratio = (t + 1) / total
        conf = torch.full(ids.shape, float("inf"), device=ids.device)
        conf[unknown] = logp + confidence_noise * (1 - ratio) * gumbel(logp.shape, generator, logp)
        left = unknown.sum(1)
        keep = torch.floor(n0.double() * mask_schedule(ratio)).long()
        keep = torch.minimum(left - 1, keep).clamp(min=1)
        keep = torch.where(left > 0, keep, torch.zeros_like(keep))  # an image without a hole re-masks nothing
        rank = torch.sort(conf, dim=1, stable=True).indices.argsort(1)  # 0 = least confident
        ids = torch.where(rank < keep[:, None], torch.full_like(sampled, mask_id), sampled)
        yield TokenStep(t + 1, total, ids, sampled, t + 1)
    return ids


def autoregressive_decode(model, ids: torch.Tensor, mask_id: int, start_id: int, grid: int,
                          temperature: float = 1.0, top_k: int = 0, generator: torch.Generator | None = None,
                          check: Callable[[], None] | None = None, pixels: torch.Tensor | None = None,
                          top_p: float = 1.0) -> Generator[TokenStep, None, torch.Tensor]:
    """ids B x N with ``mask_id`` in the hole -> the hole written in raster order. Yields a TokenStep each time
    a row of tokens is finished (for the first image of the batch) and at the end; ``check`` runs before every
    token (cancellation); ``pixels``: the encoder's known-pixel input, for models that read it."""
    hole = ids == mask_id
    where, valid = raster_order(hole)
    out = ids.clone()
    if not hole.any():
        return out
    memory = model.encode(ids, pixels)
    prev = torch.full((ids.shape[0], 1), start_id, dtype=torch.long, device=ids.device)
    m = where.shape[1]
    rows = [int(r) for r in torch.unique(where[0, valid[0]] // grid)] or [0]
    done_rows = 0
    for i in range(m):
        if check is not None:
            check()
        logits = model.decode(memory, prev, where[:, :i + 1])[:, -1]
        new, _ = sample_ids(logits, temperature, top_k, generator, top_p)
        ok = valid[:, i]
        out[ok, where[ok, i]] = new[ok]
        prev = torch.cat([prev, new[:, None]], 1)
        end_of_row = i == m - 1 or not valid[0, i + 1] or int(where[0, i + 1]) // grid != int(where[0, i]) // grid
        if (valid[0, i] and end_of_row) or i == m - 1:
            done_rows = min(done_rows + 1, len(rows))
            draft = torch.where(out == mask_id, torch.zeros_like(out), out)
            yield TokenStep(done_rows if i < m - 1 else len(rows), len(rows), out.clone(), draft, i + 1)
    return out
