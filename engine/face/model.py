"""Conditional VAE face inpainter with an attribute-conditioned discriminator.

Maths, with the papers it comes from:

- Encoder q(z | x_masked, m) = N(mu, diag sigma^2): it sees the image with the hole zeroed and the hole mask
  (the seed's design; Pathak et al. 2016 context encoders do the same). z is drawn by the reparameterisation trick
  z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", sec. 2.4), so the
  sample is differentiable in (mu, sigma).
- KL to the prior N(0, I), in closed form (Kingma & Welling 2014, appendix B), summed over the latent dimensions:
  KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - ln sigma_j^2).
  (The seed's eq. (2), "-1 - ln sigma + sigma + mu^2", is not the Gaussian KL; this is.)
- Conditioning as in a conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using
  Deep Conditional Generative Models"): the decoder models p(x | z, y) with y = (smile, glasses). Each attribute
  has two learned embedding vectors (off, on); a value a in [0, 1] uses (1 - a) * e_off + a * e_on, so the
  editor's 0/1 toggles pick one and fractional values interpolate. The embeddings are concatenated to z.
- Reconstruction: Bernoulli likelihood of pixel intensities in [0, 1] (binary cross-entropy on the decoder logits),
  summed over pixels, with hole pixels weighted ``hole_weight`` times (1 = the plain ELBO); loss = BCE + 0.5 KL.
- Adversarial fine-tuning as in VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned
  similarity metric"): a discriminator D judges the composite (decoder output inside the hole, the real image
  outside); the generator adds the non-saturating loss -log D(G). D is conditioned on the attributes by
  projection (Miyato & Koyama 2018), so an un-smiling mouth under smile=1 is a detectable fake.

Deviation from the seed (and why): the decoder also receives the encoder's feature maps at 32, 16 and 8 pixels
(U-Net skips). They carry only the *visible* context (the hole is zero in the input), so the content of the hole
still has to come from z and the attribute embeddings, but the fill's colours and edges line up with its
surroundings far better than through a 4x4 bottleneck alone, at a small fraction of the seed's 13M parameters.
With skips the decoder leans on them and the attribute, entering only at 4x4, was ignored after 1000 CPU steps
(smile control 0 %); so the embeddings are concatenated to z *and* broadcast into every decoder scale
(``attr_everywhere``), the way conditional generators such as pix2pix-style cGANs inject labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine import weights

ATTRIBUTES = ("smile", "glasses")


@dataclass
class FaceConfig:
    res: int = 64  # square working resolution (64 or 128)
    ch: int = 32  # channels of the first encoder block; doubles per block
    z_dim: int = 128
    emb_dim: int = 16  # per attribute
    n_attr: int = 2
    skips: bool = True
    attr_everywhere: bool = True  # also broadcast the attribute embeddings into every decoder scale
    disc_ch: int = 32


def _down(cin: int, cout: int, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _n_blocks(res: int) -> int:
    return {64: 4, 128: 5}[res]


class Encoder(nn.Module):
    """(masked RGB, mask) at res -> (mu, logvar) plus the feature maps used as skips."""

    def __init__(self, cfg: FaceConfig) -> None:
        super().__init__()
        n = _n_blocks(cfg.res)
        chs = [min(cfg.ch * 2**i, cfg.ch * 8) for i in range(n)]
        self.blocks = nn.ModuleList([_down(4 if i == 0 else chs[i - 1], chs[i], bn=i > 0) for i in range(n)])
        self.to_stats = nn.Linear(chs[-1] * 16, 2 * cfg.z_dim)
        self.chs = chs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        mu, logvar = self.to_stats(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0), feats[:-1]


class AttributeEmbedding(nn.Module):
    """Two learned vectors per attribute, linearly interpolated by the attribute value in [0, 1]."""

    def __init__(self, n_attr: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(n_attr, 2, dim) * 0.5)

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # a: B x n_attr in [0, 1] -> B x n_attr*dim
        a = a.clamp(0, 1).unsqueeze(-1)
        e = self.table[:, 0] * (1 - a) + self.table[:, 1] * a
        return e.flatten(1)


class Decoder(nn.Module):
    """[z, attribute embeddings] -> logits of the full res x res RGB image."""

    def __init__(self, cfg: FaceConfig, enc_chs: list[int]) -> None:
        super().__init__()
        self.skips = cfg.skips
        top = enc_chs[-1]
        self.top = top
        self.fc = nn.Linear(cfg.z_dim + cfg.n_attr * cfg.emb_dim, top * 16)
        self.fc_bn = nn.BatchNorm2d(top)
        self.attr_everywhere = cfg.attr_everywhere
        extra = cfg.n_attr * cfg.emb_dim if cfg.attr_everywhere else 0
        ups = []
        cin = top
        for i in range(len(enc_chs) - 1, 0, -1):  # 4 -> 8 -> ... -> res/2
            cout = enc_chs[i - 1]
            ups.append(_up(cin + extra, cout))
            cin = cout + (enc_chs[i - 1] if cfg.skips else 0)
        self.ups = nn.ModuleList(ups)
        self.last_up = _up(cin, max(cfg.ch // 2, 8))  # res/2 -> res
        self.out = nn.Conv2d(max(cfg.ch // 2, 8) + 4, 3, 3, 1, 1)  # sees the masked input again at full res

    def forward(self, z: torch.Tensor, emb: torch.Tensor, feats: list[torch.Tensor],
                x_in: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc_bn(self.fc(torch.cat([z, emb], 1)).view(-1, self.top, 4, 4)))
        for up, skip in zip(self.ups, reversed(feats)):
            if self.attr_everywhere:
                h = torch.cat([h, emb[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], 1)
            h = up(h)
            if self.skips:
                h = torch.cat([h, skip], 1)
        h = self.last_up(h)
        return self.out(torch.cat([h, x_in], 1))


class Encoded(NamedTuple):
    """What the encoder made of a masked image: its input (hole zeroed + mask), q(z | x) and the skip features."""
    x_in: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    feats: list[torch.Tensor]


class FaceCVAE(nn.Module):
    def __init__(self, cfg: FaceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.embed = AttributeEmbedding(cfg.n_attr, cfg.emb_dim)
        self.decoder = Decoder(cfg, self.encoder.chs)

    @staticmethod
    def prepare(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image B x 3 x H x W in [0, 1], mask B x 1 x H x W (1 = hole) -> the encoder input (hole zeroed, + mask)."""
        return torch.cat([image * (1 - mask), mask], 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, attrs: torch.Tensor,
                eps: torch.Tensor | None = None, temperature: float = 1.0):
        """Returns (logits, mu, logvar). ``eps`` None = a fresh N(0, I) draw (training); inference passes its own."""
        x_in, mu, logvar, feats = self.encode(image, mask)
        if eps is None:
            eps = torch.randn_like(mu)
        z = reparameterise(mu, logvar, eps, temperature)
        return self.decoder(z, self.embed(attrs), feats, x_in), mu, logvar

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> "Encoded":
        """The encoder's half: the editor keeps it while only the attributes, the seed or the variation change."""
        x_in = self.prepare(image, mask)
        return Encoded(x_in, *self.encoder(x_in))

    def sample(self, encoded: "Encoded", attrs: torch.Tensor, eps: torch.Tensor, temperature: float = 1.0,
               strength: float = 0.0) -> torch.Tensor:
        """The decoder's half: B x 3 x H x W in [0, 1] for z = mu + sigma (temperature eps), with attribute guidance
        ``strength`` (``guided_logits``)."""
        x_in, mu, logvar, feats = encoded
        z = reparameterise(mu, logvar, eps, temperature)
        return torch.sigmoid(guided_logits(self, z, attrs, feats, x_in, strength))


def guided_logits(model: "FaceCVAE", z: torch.Tensor, attrs: torch.Tensor, feats: list[torch.Tensor],
                  x_in: torch.Tensor, strength: float = 0.0) -> torch.Tensor:
    """Decoder logits with attribute guidance: L(a) + w * sum_k [L(a) - L(a with attribute k flipped)].

    The contrast idea of classifier-free guidance (Ho & Salimans 2022), with the opposite attribute value in place
    of an unconditional model: it amplifies exactly what the attribute changes. w = 0 is the plain cVAE decoder.
    All 1 + n_attr decoder passes run as one batch."""
    if strength == 0.0:
        return model.decoder(z, model.embed(attrs), feats, x_in)
    b, k = attrs.shape
    variants = [attrs]
    for j in range(k):
        flip = attrs.clone()
        flip[:, j] = 1.0 - flip[:, j]
        variants.append(flip)
    a_all = torch.cat(variants, 0)
    rep = lambda t: t.repeat(k + 1, *([1] * (t.dim() - 1)))  # noqa: E731
    logits = model.decoder(rep(z), model.embed(a_all), [rep(f) for f in feats], rep(x_in))
    logits = logits.view(k + 1, b, 3, x_in.shape[2], x_in.shape[3])
    base = logits[0]
    return base + strength * (k * base - logits[1:].sum(0))


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """z = mu + sigma * (temperature * eps), sigma = exp(logvar / 2) (Kingma & Welling 2014, eq. 10)."""
    return mu + torch.exp(0.5 * logvar) * (eps * temperature)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sample, summed over dimensions (Kingma & Welling 2014, appendix B):
    1/2 * sum(mu^2 + sigma^2 - 1 - ln sigma^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def reconstruction_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                       hole_weight: float) -> torch.Tensor:
    """Bernoulli negative log-likelihood per sample, summed over pixels; hole pixels count ``hole_weight`` times."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    w = 1.0 + (hole_weight - 1.0) * mask
    return (bce * w).flatten(1).sum(1)


class Discriminator(nn.Module):
    """Four strided conv blocks -> a logit per image, with a projection term <embed(y), features> (cGAN)."""

    def __init__(self, cfg: FaceConfig) -> None:
        super().__init__()
        n = _n_blocks(cfg.res)
        chs = [min(cfg.disc_ch * 2**i, cfg.disc_ch * 8) for i in range(n)]
        self.blocks = nn.Sequential(*[_down(4 if i == 0 else chs[i - 1], chs[i], bn=i > 0) for i in range(n)])
        feat = chs[-1]
        self.pool_fc = nn.Linear(feat * 16, 256)
        self.head = nn.Linear(256, 1)
        self.embed = AttributeEmbedding(cfg.n_attr, 256 // cfg.n_attr)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        h = self.blocks(torch.cat([image * 2 - 1, mask], 1)).flatten(1)
        h = F.leaky_relu(self.pool_fc(h), 0.2)
        return self.head(h).squeeze(1) + (self.embed(attrs) * h).sum(1) / 16.0


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def save_pretrained(model: FaceCVAE, folder: str | Path, training: dict | None = None) -> None:
    """config.json (the dataclass, plus ``training`` facts) + model.safetensors (generator only): engine.weights."""
    weights.save_pretrained(folder, model, model.cfg, training)


def from_pretrained(folder: str | Path) -> FaceCVAE:
    return weights.load_pretrained(folder, FaceCVAE, FaceConfig)[0]
