"""cVAE maths and shapes: encoder/decoder sizes, the KL formula, the reparameterisation, save/load, training."""
import math

import torch

from engine.face.model import (Discriminator, FaceConfig, FaceCVAE, from_pretrained, guided_logits, kl_divergence,
                               reconstruction_bce, reparameterise, save_pretrained)

TINY = FaceConfig(ch=8, z_dim=16, emb_dim=4, disc_ch=8)


def test_shapes_64_and_128():
    for res in (64, 128):
        cfg = FaceConfig(res=res, ch=8, z_dim=16, emb_dim=4, disc_ch=8)
        G, D = FaceCVAE(cfg), Discriminator(cfg)
        x, m, a = torch.rand(2, 3, res, res), torch.zeros(2, 1, res, res), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        mu, logvar, feats = G.encoder(G.prepare(x, m))
        assert mu.shape == (2, 16) and logvar.shape == (2, 16)
        assert [f.shape[-1] for f in feats] == [res // 2 ** (i + 1) for i in range(len(feats))]
        logits, _, _ = G(x, m, a)
        assert logits.shape == (2, 3, res, res)
        assert D(x, m, a).shape == (2,)


def test_kl_matches_hand_computation():
    mu = torch.tensor([[0.5, -1.0]])
    sigma = torch.tensor([[2.0, 0.5]])
    logvar = torch.log(sigma**2)
    # KL(N(mu, s^2) || N(0, 1)) = ln(1/s) + (s^2 + mu^2) / 2 - 1/2, per dimension
    hand = sum(math.log(1 / s) + (s**2 + m**2) / 2 - 0.5 for m, s in [(0.5, 2.0), (-1.0, 0.5)])
    assert abs(kl_divergence(mu, logvar).item() - hand) < 1e-5
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() < 1e-7


def test_reparameterisation():
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.log(torch.tensor([[4.0, 0.25]]))
    eps = torch.tensor([[1.0, -2.0]])
    assert torch.allclose(reparameterise(mu, logvar, eps), torch.tensor([[3.0, 1.0]]))
    assert torch.allclose(reparameterise(mu, logvar, eps, temperature=0.0), mu)
    mu.requires_grad_(True)
    reparameterise(mu, logvar, eps).sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))


def test_bce_weights_hole():
    x = torch.full((1, 3, 4, 4), 0.5)
    logits = torch.zeros(1, 3, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :] = 1
    base = reconstruction_bce(logits, x, m, 1.0).item()
    assert abs(base - 48 * math.log(2)) < 1e-4
    assert abs(reconstruction_bce(logits, x, m, 3.0).item() - (24 * 3 + 24) * math.log(2)) < 1e-4


def test_attribute_changes_output_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    G = FaceCVAE(TINY).eval()
    x, m = torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
    eps = torch.zeros(1, 16)
    with torch.no_grad():
        a0 = G(x, m, torch.tensor([[0.0, 0.0]]), eps)[0]
        a1 = G(x, m, torch.tensor([[1.0, 0.0]]), eps)[0]
        g1 = G(x, m, torch.tensor([[0.0, 1.0]]), eps)[0]
    assert (a0 - a1).abs().max() > 1e-4 and (a0 - g1).abs().max() > 1e-4
    save_pretrained(G, tmp_path, {"note": "test"})
    G2 = from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.allclose(G2(x, m, torch.tensor([[1.0, 0.0]]), eps)[0], a1, atol=1e-6)


def test_hole_content_does_not_reach_the_encoder():
    G = FaceCVAE(TINY).eval()
    x = torch.rand(1, 3, 64, 64)
    m = torch.zeros(1, 1, 64, 64)
    m[..., 20:40, 20:40] = 1
    y = x.clone()
    y[..., 20:40, 20:40] = torch.rand(1, 3, 20, 20)
    assert torch.equal(G.prepare(x, m), G.prepare(y, m))


def test_attribute_guidance_formula():
    torch.manual_seed(1)
    G = FaceCVAE(TINY).eval()
    x, m = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        x_in = G.prepare(x, m)
        mu, _, feats = G.encoder(x_in)
        dec = lambda aa: G.decoder(mu, G.embed(aa), feats, x_in)  # noqa: E731
        assert torch.allclose(guided_logits(G, mu, a, feats, x_in, 0.0), dec(a))
        flip0, flip1 = a.clone(), a.clone()
        flip0[:, 0], flip1[:, 1] = 1 - a[:, 0], 1 - a[:, 1]
        want = dec(a) + 1.5 * (2 * dec(a) - dec(flip0) - dec(flip1))
        assert torch.allclose(guided_logits(G, mu, a, feats, x_in, 1.5), want, atol=1e-5)


def test_inference_halves_match_the_training_forward():
    """encode + sample (the editor's cached path) is the training forward pass, sigmoid'ed, for the same noise."""
    torch.manual_seed(2)
    G = FaceCVAE(TINY).eval()
    x, m = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    m[..., 16:40, 8:56] = 1
    a, eps = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.randn(2, TINY.z_dim)
    with torch.no_grad():
        logits, _, _ = G(x, m, a, eps, temperature=0.7)
        assert torch.allclose(G.sample(G.encode(x, m), a, eps, 0.7), torch.sigmoid(logits), atol=1e-6)
        assert not torch.allclose(G.sample(G.encode(x, m), a, eps, 0.7, strength=1.0), torch.sigmoid(logits))
