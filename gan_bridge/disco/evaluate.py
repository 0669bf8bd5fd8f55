"""DiscoFaceGAN's evaluation (Sec. 4.3, 5.1): disentanglement scores DS_u (Eq. 9), Fréchet distance in VGG16
space, perceptual path length and the W-space direction cosines of Table 2.

``estimate(images) -> {factor: (B, F)}`` re-estimates every factor from images (the paper: the 3D
reconstruction network for expression, lighting and pose, a face-recognition feature for identity;
:func:`face_estimator` builds that from :class:`gan_bridge.face.disco.DiscoFace`). Images are
(B, 3, R, R) in [-1, 1]; generators are :class:`DiscoGenerator`s.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


from .vae import FACTORS

Estimator = Callable[[torch.Tensor], dict]


def face_estimator(face) -> Estimator:
    """``images -> {identity: f_id (B, 128), expression (B, Ke), lighting (B, 27), pose (B, 3)}`` by
    the regressor (and the identity network aligned on its landmarks)."""
    def estimate(images: torch.Tensor) -> dict:
        p, _, lam = face.estimate(images)
        parts = _split_estimate(lam, face.model)
        parts["identity"] = face.identity(images, p)
        return parts
    return estimate


def _split_estimate(lam: torch.Tensor, model) -> dict:
    from morph3d.model import model_dims
    d = model_dims(model)
    _, _, expr, light, rot = lam.split([d["identity"], d["texture"], d["expression"], d["lighting"],
                                              d["rotation"]], 1)
    return {"expression": expr, "lighting": light, "pose": rot}


@torch.no_grad()
def _generate(G, z: torch.Tensor, batch: int = 32) -> torch.Tensor:
    return torch.cat([G(c, noise_mode="const") for c in z.split(batch)]).clamp(-1, 1)


@torch.no_grad()
def factor_variances(G, estimate: Estimator, factor: str, groups: int, per_group: int, seed: int = 0) -> dict:
    """sigma_u for every factor u when only ``factor`` varies: ``groups`` random settings of the other
    latents (noise included), ``per_group`` values of ``factor`` each; the variance of each estimated
    factor within a group (mean over its dimensions), averaged over groups. -> {u: float}."""
    if groups < 1 or per_group < 2:
        raise ValueError(f"DS needs groups >= 1 and per_group >= 2, got {groups}, {per_group}")
    gen = torch.Generator().manual_seed(seed)
    base = G.sample_z(groups, gen).repeat_interleave(per_group, 0)
    z = G.swap(base, G.sample_z(groups * per_group, gen), factor)
    est = estimate(_generate(G, z))
    out = {}
    for u, v in est.items():
        v = v.reshape(groups, per_group, -1).double()
        out[u] = float(v.var(1, unbiased=True).mean())
    return out


def disentanglement_scores(G, estimate: Estimator, reference_var: dict, groups: int = 1000, per_group: int = 10,
                           seed: int = 0) -> dict:
    """Eq. 9: DS_i = prod_{j != i} (sigma_i / sigma_j), every sigma normalised by ``reference_var[u]`` (the
    variance of u's estimates over real images). -> {factor: DS}."""
    scores = {}
    for k, factor in enumerate(FACTORS):
        var = factor_variances(G, estimate, factor, groups, per_group, seed + k)
        norm = {u: var[u] / max(reference_var[u], 1e-30) for u in FACTORS}
        scores[factor] = math.prod(norm[factor] / max(norm[u], 1e-30) for u in FACTORS if u != factor)
    return scores


def reference_variances(estimate: Estimator, images: torch.Tensor, batch: int = 32) -> dict:
    """Variance of each factor's estimates over real ``images`` (N, 3, R, R) (mean over dimensions)."""
    if images.shape[0] < 2:
        raise ValueError("reference variances need at least 2 real images")
    parts: dict = {}
    with torch.no_grad():
        for chunk in images.split(batch):
            for u, v in estimate(chunk.float()).items():
                parts.setdefault(u, []).append(v)
    return {u: float(torch.cat(v).double().var(0).mean()) for u, v in parts.items()}


def frechet(G, real: torch.Tensor, n: int, space=None, seed: int = 0) -> float:
    """Fréchet distance between ``n`` G images and ``n`` of ``real`` (N, 3, R, R) in [-1, 1] or uint8,
    in ``space`` (default VGG16 relu5_3, :func:`gan_bridge.metrics.features.vgg16_space`)."""
    from gan_bridge.methods.fd_probe import FDProbe
    return FDProbe(real, G.resolution, n, seed=seed, space=space)(G)


@torch.no_grad()
def perceptual_path_length(G, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n: int = 1000,
                           eps: float = 1e-4, seed: int = 0, batch: int = 16) -> float:
    """StyleGAN's PPL in W (end points): E[d(G(lerp(w0, w1, t)), G(lerp(w0, w1, t + eps))) / eps^2], t ~ U(0, 1),
    with the 1st and 99th percentiles cut. distance: (B, 3, R, R) x2 -> (B,) (e.g. LPIPS)."""
    gen = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        w0, w1 = G.mapping(G.sample_z(b, gen)), G.mapping(G.sample_z(b, gen))
        t = torch.rand(b, 1, 1, generator=gen)
        wa, wb = torch.lerp(w0, w1, t), torch.lerp(w0, w1, t + eps)
        imgs = G.synthesis(torch.cat([wa, wb]), noise_mode="const")
        a, c = imgs.chunk(2)
        values.append(distance(a, c).flatten() / eps ** 2)
    v = torch.cat(values).double()
    lo, hi = torch.quantile(v, 0.01), torch.quantile(v, 0.99)
    keep = v[(v >= lo) & (v <= hi)]
    return float(keep.mean() if keep.numel() else v.mean())


def _w(G, lam: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return G.mapping.from_lambda(lam, eps, update_w_avg=False)[:, 0]


@torch.no_grad()
def direction_cosines(G, factor: str, pairs: int = 50, others: int = 100, offset: bool = False,
                      seed: int = 0) -> tuple[float, float]:
    """Table 2: mean and std over ``pairs`` (a, b) of the mean pairwise cosine of Delta w(i, a, b) =
    w(u_i = a, u_{j}) - w(u_i = b, u_{j}) across ``others`` random u_{j} (Property 1). ``offset``:
    b = a + Delta with a fixed offset Delta and a drawn afresh per u_{j} (Property 2). lambda values
    come from the VAE decoders."""
    if others < 2 or pairs < 1:
        raise ValueError(f"direction cosines need pairs >= 1 and others >= 2, got {pairs}, {others}")
    gen = torch.Generator().manual_seed(seed)
    vaes = G.vaes
    if factor not in FACTORS:
        raise ValueError(f"unknown factor {factor!r}; use one of {', '.join(FACTORS)}")
    means = []

    def draw(n: int) -> torch.Tensor:
        return vaes.split(vaes.decode(G.sample_z(n, gen)[:, :vaes.z_dim]))[factor]

    for _ in range(pairs):
        z = G.sample_z(others, gen)
        parts, eps = vaes.split(G.mapping.lam(z)), z[:, vaes.z_dim:]
        if offset:
            delta = draw(1) - draw(1)
            a = draw(others)
            b = a + delta
        else:
            a, b = draw(1), draw(1)
        la = vaes.join({**parts, factor: a.expand_as(parts[factor])})
        lb = vaes.join({**parts, factor: b.expand_as(parts[factor])})
        d = F.normalize(_w(G, la, eps) - _w(G, lb, eps), dim=1)
        cos = d @ d.T
        n = cos.shape[0]
        means.append(float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))))
    m = torch.tensor(means, dtype=torch.float64)
    return float(m.mean()), float(m.std()) if len(means) > 1 else 0.0


__all__ = ["direction_cosines", "disentanglement_scores", "face_estimator", "factor_variances", "frechet",
           "perceptual_path_length", "reference_variances"]
