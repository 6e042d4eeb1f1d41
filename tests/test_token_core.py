"""Token family core: FSQ, patch-local tokens, the training masks and loss, MaskGIT and raster-order decoding.

Each known pitfall of public re-implementations has its own test: the loss on the wrong positions, unmasked ids
fed to the transformer, and the re-mask count taken from all positions instead of the starting hole.
"""
import math

import numpy as np
import pytest
import torch

from engine.api import drive
from engine.token.fsq import FSQ, Tokenizer, TokenizerConfig, known_patches, token_hole
from engine.token.masks import editor_holes, token_holes, training_masks
from engine.token.sampling import autoregressive_decode, maskgit_decode, sample_ids
from engine.token.train import batch_loss
from engine.token.transformer import (TransformerConfig, build, raster_order, sincos_2d, teacher_forcing)

TINY_TOK = TokenizerConfig(channels=1, size=28, patch=4, levels=(4, 3, 3), enc_hidden=16, dec_grid=16, dec_pixel=8)


def tiny_net(variant="bidirectional", vocab=36, grid=7, pixels=0):
    torch.manual_seed(0)
    return build(TransformerConfig(variant=variant, vocab=vocab, grid=grid, width=32, layers=2, decoder_layers=1,
                                   heads=2, pixels=pixels)).eval()


# -- FSQ and the tokenizer ---------------------------------------------------------------------------------------
def test_fsq_levels_ids_round_trip_and_straight_through():
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(100000, 4, generator=torch.Generator().manual_seed(0)) * 1.5
    zhat = fsq(z)
    for i, L in enumerate((8, 5, 5, 5)):
        assert len(torch.unique(zhat[:, i])) == L, "bounded rounding gives exactly L levels"
    ids = fsq.codes_to_ids(zhat)
    assert ids.min() >= 0 and ids.max() < 1000 and len(torch.unique(ids)) == 1000, "the whole codebook is reachable"
    all_ids = torch.arange(1000)
    assert torch.equal(fsq.codes_to_ids(fsq.ids_to_codes(all_ids)), all_ids)
    z.requires_grad_(True)
    fsq(z).sum().backward()
    assert z.grad.abs().sum() > 0, "round() passes gradients straight through"


def test_mask_and_start_are_ids_of_their_own():
    c = TokenizerConfig()
    assert c.codebook_size == 1000 and c.mask_id == 1000 and c.start_id == 1001
    t = TransformerConfig(vocab=1000)
    assert (t.mask_id, t.start_id) == (1000, 1001)
    net = tiny_net(vocab=1000)
    assert net.head.out_features == 1000, "the head can only ever produce codebook ids"
    assert net.embed.num_embeddings == 1002


def test_known_tokens_never_see_hole_pixels():
    """PUT's patch-local encoding: whatever the hole holds, every token outside it is the same."""
    torch.manual_seed(0)
    tok = Tokenizer(TINY_TOK).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    hole = torch.zeros(3, 1, 28, 28)
    hole[0, :, 5:13, 9:19] = 1
    hole[1, :, :, :14] = 1
    hole[2, :, 20:, 3:5] = 1
    y = torch.where(hole > 0, torch.rand_like(x) * 2 - 1, x)
    th = token_hole(hole, 4)
    a, b = tok.encode(x), tok.encode(y)
    assert torch.equal(a[~th], b[~th])
    za, zb = (tok.encoder(tok.patches(v)) for v in (x, y))  # before rounding: the test can see a difference
    assert torch.equal(za[~th], zb[~th]) and not torch.allclose(za[th], zb[th])


def test_every_token_touching_the_hole_is_in_the_token_hole():
    rng = np.random.default_rng(0)
    holes = editor_holes(rng, 50, 28)
    th = token_holes(holes, 4)
    assert np.array_equal(th, token_hole(torch.from_numpy(holes).float(), 4).numpy())
    up = th.repeat(4, 1).repeat(4, 2)
    assert not (holes & ~up).any(), "no hole pixel lies in a token left known"
    blocks = holes.reshape(50, 7, 4, 7, 4).any((2, 4))
    assert np.array_equal(blocks, th), "and no token without a hole pixel is masked"


@pytest.mark.parametrize("variant", ["bidirectional", "autoregressive"])
def test_known_pixel_input_shows_edge_patches_but_never_a_hole_pixel(variant):
    """A MASK token at the hole's edge gets the part of its patch outside the hole; nothing depends on the hole."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=g) * 2 - 1
    hole = torch.zeros(2, 1, 28, 28)
    hole[:, :, 7:21, 7:21] = 1  # the benchmark's centre hole: it cuts through the tokens at its edge
    y = torch.where(hole > 0, torch.rand(x.shape, generator=g) * 2 - 1, x)
    px, py = known_patches(x, hole, 4), known_patches(y, hole, 4)
    assert px.shape == (2, 49, 32) and torch.equal(px, py), "whatever the hole holds, the input is the same"
    edge = 1 * 7 + 3  # token (1, 3): pixels 4-7 x 12-15, row 7 in the hole, rows 4-6 known
    known = px[0, edge, 16:].view(4, 4)
    assert torch.equal(known[:3], torch.ones(3, 4)) and torch.equal(known[3], torch.zeros(4))
    assert torch.equal(px[0, edge, :12], x[0, 0, 4:7, 12:16].flatten()), "the known rows' pixels themselves"
    assert torch.equal(px[0, 0, :16], x[0, 0, :4, :4].flatten()) and (px[0, 0, 16:] == 1).all()
    net = tiny_net(variant, pixels=32)
    ids = torch.randint(0, 36, (2, 49), generator=g)
    ids = torch.where(token_hole(hole, 4).flatten(1), torch.full_like(ids, 36), ids)
    if variant == "bidirectional":
        out = [net(ids, None, p) for p in (px, py, known_patches(-x, hole, 4))]
    else:
        out = [net.encode(ids, p) for p in (px, py, known_patches(-x, hole, 4))]
    assert torch.equal(out[0], out[1]) and not torch.allclose(out[0], out[2]), "read, and only outside the hole"
    with pytest.raises(ValueError, match="known pixels"):
        net(ids, None) if variant == "bidirectional" else net.encode(ids)


def test_decoder_uses_known_pixels_and_shapes():
    torch.manual_seed(0)
    tok = Tokenizer(TINY_TOK).eval()
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    hole = torch.zeros(2, 1, 28, 28)
    hole[:, :, 10:20, 10:20] = 1
    ids = tok.encode(x)
    y = tok.decode(ids, x, hole)
    assert y.shape == x.shape and y.abs().max() <= 1
    # pixels inside the hole given to the decoder are zeroed: they cannot matter
    assert torch.equal(y, tok.decode(ids, torch.where(hole > 0, -x, x), hole))


def test_shifted_codes_are_the_patch_tokens_a_few_pixels_off():
    torch.manual_seed(0)
    tok = Tokenizer(TINY_TOK).eval()
    ramp = torch.arange(28.0)
    x = torch.sin(ramp[:, None] * 0.9 + ramp[None] * 0.4).expand(2, 1, 28, 28) * 3  # shifts change every patch
    out = tok.shifted_codes(x, 2)
    pad = torch.nn.functional.pad(x, (2,) * 4, mode="replicate")
    every = torch.stack([tok.quantize(pad[..., dy:dy + 28, dx:dx + 28]) for dy in range(5) for dx in range(5)])
    match = (every == out[None]).all(-1)  # offsets x B x g x g
    assert match.any(0).all(), "each token is its patch's token at one offset within the shift"
    assert not (every[12] == out).all(-1).all(), "not simply the unshifted image"  # offset (2, 2) = no shift
    hole = torch.zeros(2, 1, 28, 28)
    hole[..., 4:12, 4:12] = 1
    nothing = torch.zeros(2, 7, 7, dtype=torch.bool)
    assert torch.equal(tok(x, hole), tok(x, hole, nothing, 2)), "nothing replaced: the plain training pass"
    assert not torch.equal(tok(x, hole, token_hole(hole, 4), 2), tok(x, hole))


def test_detail_loss_asks_for_the_truths_edges_in_the_hole_wherever_they_lie():
    from engine.token.train_tokenizer import detail_loss

    x = -torch.ones(1, 3, 16, 16)
    x[..., :, 5] = 1  # a thin vertical line in the left window
    moved = -torch.ones(1, 3, 16, 16)
    moved[..., :, 6] = 1  # the same line a pixel off, same window
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), 5, 1)
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., :, :8] = 1
    assert detail_loss(x, x, hole, 8) == 0
    assert detail_loss(moved, x, hole, 8) < 0.01 * detail_loss(blurred, x, hole, 8), "place inside a window is free"
    assert detail_loss(blurred, x, hole, 8) > 0
    left_off = torch.zeros(1, 2, 2, dtype=torch.bool)
    assert detail_loss(blurred, x, hole, 8, left_off) == 0, "windows left out count nothing"
    flat_right = x.clone()
    flat_right[..., :, 12] = 1  # an extra line outside the hole costs nothing
    assert detail_loss(flat_right, x, hole, 8) == 0


def test_pattern_loss_sees_a_texture_locked_to_the_token_grid_not_content():
    from engine.token.train_tokenizer import pattern_loss

    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32) * 2 - 1  # content at every phase of the grid
    texture = torch.tensor([[0.2, -0.2] * 2] * 4)  # stripes, repeated in every 4 x 4 token
    hole = torch.ones(8, 1, 32, 32)
    assert pattern_loss(x, x, hole, 4) == 0
    assert pattern_loss(x + texture.repeat(8, 8), x, hole, 4) > 0.15, "a fixed texture in every token"
    assert pattern_loss(torch.roll(x, (1, 2), (2, 3)), x, hole, 4) < 0.05, "moved content is no texture"
    hole[..., :, :] = 0
    assert pattern_loss(x + texture.repeat(8, 8), x, hole, 4) == 0, "only tokens inside the hole count"


# -- training masks and the loss ---------------------------------------------------------------------------------
def test_training_masks_follow_the_cosine_schedule_and_editor_holes():
    rng = np.random.default_rng(0)
    masked, holes, unknown = training_masks(rng, 4000, 8, 8)
    assert (masked <= holes).all() and masked.any((1, 2)).all()
    editor = ~holes.all((1, 2))
    assert np.array_equal(token_holes(unknown[editor], 8), holes[editor]), "editor half: its pixel hole is unknown"
    assert np.array_equal(unknown[~editor], masked[~editor].repeat(8, 1).repeat(8, 2)), "uniform: masked patches"
    assert 0.4 < editor.mean() < 0.6, "half of the masks are shaped like an editor's"
    ratio = masked[~editor].mean((1, 2))
    expect = np.mean(np.cos(np.pi * rng.uniform(size=100000) / 2))  # E[gamma(r)] = 2 / pi
    assert abs(ratio.mean() - expect) < 0.03
    full, holes_ar, _ = training_masks(np.random.default_rng(1), 500, 8, 8, full_hole=True)
    ed = ~holes_ar.all((1, 2))
    assert np.array_equal(full[ed], holes_ar[ed]), "the autoregressive variant masks whole holes"


class SpyBidirectional(torch.nn.Module):
    """Records what the transformer is given; logits for every position, so gradients show what is scored."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.table = torch.nn.Parameter(torch.zeros(config.grid ** 2, config.vocab))
        self.seen = []

    def forward(self, ids, at=None, pixels=None):
        self.seen.append((ids.clone(), None if at is None else at.clone()))
        self.full = self.table.expand(ids.shape[0], -1, -1) + 0
        self.full.retain_grad()
        return self.full[at] if at is not None else self.full


def test_bidirectional_loss_only_on_masked_positions_and_no_true_ids_fed_in():
    cfg = TransformerConfig(vocab=12, grid=4)
    spy = SpyBidirectional(cfg)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (6, 16), generator=g)
    masked = torch.rand(6, 16, generator=g) < 0.4
    masked[:, 0] = True
    loss, _ = batch_loss(spy, cfg, ids, masked, 0.1)
    inp, at = spy.seen[-1]
    assert at is None, "logits on every position (one shape per step); the loss picks the masked ones"
    assert (inp[masked] == cfg.mask_id).all(), "the transformer sees MASK at every masked position"
    assert torch.equal(inp[~masked], ids[~masked]), "and the true ids elsewhere"
    loss.backward()
    grad = spy.full.grad.abs().sum(-1)
    assert (grad[masked] > 0).all() and (grad[~masked] == 0).all(), "loss on the masked positions only"


def test_autoregressive_teacher_forcing_and_loss_positions():
    cfg = TransformerConfig(variant="autoregressive", vocab=12, grid=4)
    ids = torch.arange(32).view(2, 16) % 12
    hole = torch.zeros(2, 16, dtype=torch.bool)
    hole[0, [1, 2, 9]] = True
    hole[1, [15]] = True
    where, valid = raster_order(hole)
    assert where[0].tolist() == [1, 2, 9] and where[1, 0] == 15 and valid.tolist() == [[1, 1, 1], [1, 0, 0]]
    prev = teacher_forcing(ids, where, valid, cfg.start_id)
    assert prev[0].tolist() == [cfg.start_id, ids[0, 1], ids[0, 2]] and prev[1, 0] == cfg.start_id

    class Spy(torch.nn.Module):
        def forward(self, inp, prev_, where_, pixels=None):
            self.args = (inp, prev_, where_)
            self.out = torch.zeros(2, where_.shape[1], 12, requires_grad=True)
            return self.out

    spy = Spy()
    loss, _ = batch_loss(spy, cfg, ids, hole, 0.0)
    inp = spy.args[0]
    assert (inp[hole] == cfg.mask_id).all() and torch.equal(inp[~hole], ids[~hole])
    m = where.shape[1]
    assert torch.equal(spy.args[2][:, :m], where), "the hole's positions in raster order"
    assert spy.args[2].shape[1] == 16, "training pads the decoder's length to a bucket (a few shapes, not one a step)"
    loss.backward()
    g = spy.out.grad.abs().sum(-1)
    assert torch.equal(g[:, :m] > 0, valid) and not g[:, m:].any(), "padding steps are not scored"


def test_decoder_input_dropout_hides_teacher_inputs_but_never_start_or_targets():
    cfg = TransformerConfig(variant="autoregressive", vocab=12, grid=4)
    ids = torch.arange(64).view(4, 16) % 12
    hole = torch.zeros(4, 16, dtype=torch.bool)
    hole[:, 4:12] = True
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, inp, prev_, where_, pixels=None):
            seen["prev"] = prev_
            return torch.zeros(4, where_.shape[1], 12, requires_grad=True)

    where, valid = raster_order(hole)
    truth = teacher_forcing(ids, where, valid, cfg.start_id)
    batch_loss(Spy(), cfg, ids, hole, 0.0)
    assert torch.equal(seen["prev"][:, :8], truth), "no dropout: the true prefix"
    torch.manual_seed(0)
    batch_loss(Spy(), cfg, ids, hole, 0.0, input_dropout=0.5)
    prev = seen["prev"][:, :8]
    dropped = prev == cfg.mask_id
    assert (prev[:, 0] == cfg.start_id).all(), "START is never dropped"
    assert 0 < dropped.sum() < dropped[:, 1:].numel(), "some inputs hidden, not all"
    assert torch.equal(prev[~dropped], truth[~dropped]), "the rest are the true ids"
    batch_loss(Spy(), cfg, ids, hole, 0.0, input_dropout=1.0)
    assert (seen["prev"][:, 1:8] == cfg.mask_id).all()


# -- MaskGIT decoding --------------------------------------------------------------------------------------------
def _start(n_hole_tokens, grid=7, mask_id=36, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, mask_id, (batch, grid * grid), generator=g)
    hole = torch.zeros(batch, grid * grid, dtype=torch.bool)
    for b in range(batch):
        hole[b, torch.randperm(grid * grid, generator=g)[:n_hole_tokens]] = True
    return torch.where(hole, torch.full_like(ids, mask_id), ids), hole


def test_maskgit_invariants_every_iteration():
    net = tiny_net()
    start, hole = _start(20, batch=3)
    seen = []

    def logits_at(cur, at):
        assert torch.equal(at, cur == 36), "the transformer sees MASK at every open position"
        seen.append(cur.clone())
        return net(cur, at)

    steps = []
    final = drive(maskgit_decode(logits_at, start, 36, iterations=6, generator=torch.Generator().manual_seed(1)),
                  steps.append)
    assert len(steps) == 6 and len(seen) == 6
    for s in steps:
        assert torch.equal(s.ids[~hole], start[~hole]), "known ids unchanged after every iteration"
        assert (s.draft[hole] < 36).all(), "only codebook ids are sampled"
    opened = [int((s.ids == 36).sum()) for s in steps]
    assert opened == sorted(opened, reverse=True) and opened[-1] == 0
    assert torch.equal(final[~hole], start[~hole]) and (final[hole] < 36).all()
    # an open token, once decided, stays decided
    for a, b in zip(steps, steps[1:]):
        decided = a.ids != 36
        assert torch.equal(a.ids[decided], b.ids[decided])


def test_remask_count_comes_from_the_starting_hole_not_all_positions():
    net = tiny_net()
    start, _ = _start(10)
    steps = []
    drive(maskgit_decode(lambda c, a: net(c, a), start, 36, iterations=3, confidence_noise=0.0,
                         generator=torch.Generator().manual_seed(0)), steps.append)
    open_after = [int((s.ids == 36).sum()) for s in steps]
    expect = [math.floor(10 * math.cos(math.pi / 2 * r / 3)) for r in (1, 2)] + [0]
    assert open_after == expect == [8, 5, 0], open_after  # from all 49 positions it would be [9, 8, 0]


def test_iterations_capped_at_hole_tokens_and_nothing_to_do():
    net = tiny_net()
    start, _ = _start(3)
    steps = []
    drive(maskgit_decode(lambda c, a: net(c, a), start, 36, iterations=12), steps.append)
    assert len(steps) == 3 and [int((s.ids == 36).sum()) for s in steps] == [2, 1, 0]
    ids = torch.randint(0, 36, (1, 49))
    assert torch.equal(drive(maskgit_decode(lambda c, a: net(c, a), ids, 36)), ids)


def test_mixed_batch_never_remasks_a_known_token():
    net = tiny_net()
    start, hole = _start(12, batch=2)
    start[1] = torch.randint(0, 36, (49,))  # second image: no hole at all
    hole[1] = False
    out = drive(maskgit_decode(lambda c, a: net(c, a), start, 36, iterations=5,
                               generator=torch.Generator().manual_seed(0)),
                lambda s: None)
    assert torch.equal(out[1], start[1]) and (out[0][hole[0]] < 36).all()


def test_seed_gives_the_same_tokens_and_top_k_temperature():
    net = tiny_net()
    start, _ = _start(15)

    def run(seed, **kw):
        return drive(maskgit_decode(lambda c, a: net(c, a), start, 36, generator=torch.Generator().manual_seed(seed),
                                    **kw))
    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    assert torch.equal(run(3, temperature=0.0, confidence_noise=0.0), run(4, temperature=0.0, confidence_noise=0.0))
    logits = torch.randn(500, 36)
    ids, _ = sample_ids(logits, 1.0, 3, torch.Generator().manual_seed(0))
    top3 = logits.topk(3, -1).indices
    assert (ids[:, None] == top3).any(1).all(), "top-k samples only among the k most likely"
    assert torch.equal(sample_ids(logits, 0.0, 0, None)[0], logits.argmax(-1))


def test_top_p_samples_only_the_nucleus_in_proportion():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).repeat(4000, 1)
    logits = probs.log()
    ids, logp = sample_ids(logits, 1.0, 0, torch.Generator().manual_seed(0), top_p=0.7)
    assert set(ids.tolist()) == {0, 1}, "0.5 + 0.3 reach 0.7: the nucleus is the first two ids"
    assert abs((ids == 0).float().mean().item() - 0.5 / 0.8) < 0.03
    assert torch.allclose(logp[ids == 0], torch.tensor(0.5).log()), "log p is the model's, not the nucleus's"
    ids, _ = sample_ids(logits, 1.0, 0, torch.Generator().manual_seed(0), top_p=0.4)
    assert (ids == 0).all(), "the most likely id is always kept, even when it alone holds more than top_p"
    ids, _ = sample_ids(logits, 1.0, 0, torch.Generator().manual_seed(0), top_p=0.9)
    assert set(ids.tolist()) == {0, 1, 2}
    same = sample_ids(logits, 1.0, 0, torch.Generator().manual_seed(1))[0]
    assert torch.equal(sample_ids(logits, 1.0, 0, torch.Generator().manual_seed(1), top_p=1.0)[0], same)


# -- autoregressive decoding -------------------------------------------------------------------------------------
def test_autoregressive_writes_in_raster_order_with_positions_and_a_preview_per_row():
    net = tiny_net("autoregressive")
    start, hole = _start(17, seed=2)
    calls = []
    decode = net.decode

    def spy(memory, prev, where):
        calls.append((prev.clone(), where.clone()))
        return decode(memory, prev, where)

    net.decode = spy
    steps = []
    out = drive(autoregressive_decode(net, start, 36, 37, 7, generator=torch.Generator().manual_seed(0)),
                steps.append)
    order = torch.nonzero(hole[0]).flatten()
    assert len(calls) == 17
    for i, (prev, where) in enumerate(calls):
        assert torch.equal(where[0], order[:i + 1]), "step i predicts the i-th hole token in raster order"
        assert prev[0, 0] == 37 and (prev[0, 1:] < 36).all(), "START first, then the ids written so far"
        assert torch.equal(prev[0, 1:], out[0, order[:i]])
    rows = len(torch.unique(order // 7))
    assert len(steps) == rows and steps[-1].step == steps[-1].total == rows
    assert torch.equal(out[~hole], start[~hole]) and (out[hole] < 36).all()
    for s in steps:
        assert torch.equal(s.ids[~hole], start[~hole])


def test_sincos_positions_are_distinct():
    pe = sincos_2d(8, 64)
    assert pe.shape == (64, 64)
    assert torch.cdist(pe, pe).add(torch.eye(64) * 10).min() > 0.1


@pytest.mark.parametrize("variant", ["bidirectional", "autoregressive"])
def test_models_run_in_bfloat16_autocast(variant):
    net = tiny_net(variant)
    ids = torch.randint(0, 36, (2, 49))
    with torch.autocast("cpu", torch.bfloat16):
        if variant == "bidirectional":
            out = net(ids)
        else:
            where, _ = raster_order(torch.ones(2, 49, dtype=torch.bool))
            out = net(ids, torch.full((2, 49), 37), where)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
