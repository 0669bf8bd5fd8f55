"""Produce the StyleGAN2 golden fixtures in tests/gan_bridge/data/stylegan2/ with the reference code.

Runs OUTSIDE this project's import path, on CPU, against checkouts of
  NVlabs/stylegan2-ada-pytorch  (commit d72cc7d041b42ec8e806021a205ed9349f87c6a4)
  rosinality/stylegan2-pytorch  (commit bef283a1c24087da704d16c30abc8e36e63efa0e)
This file contains none of their code: it only calls their public classes. The rosinality checkout must be
a scratch copy: ``--patch-rosinality`` edits it in place so that its ops skip the CUDA build (they then use
their own CPU path) and its channel tables are tiny (4: 16, 8: 16, 16: 8, 32: 4 instead of 512s).

    python scripts/make_stylegan2_golden.py ada --repo /tmp/ada --out OUT
    python scripts/make_stylegan2_golden.py rosinality --repo /tmp/ros --out OUT --patch-rosinality
"""
import argparse
import copy
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

SOURCE_PLACEHOLDER = "# module source omitted from this fixture"


def _randomize(named_params, scale=0.3, bias_one=()):
    """Zero/one-initialised parameters get random values so every tensor is exercised."""
    with torch.no_grad():
        for name, p in named_params:
            if "noise_strength" in name or name.endswith("noise.weight") or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * scale + (1.0 if any(b in name for b in bias_one) else 0.0))


def make_ada(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    import dnnlib
    from training import augment, networks
    torch.manual_seed(0)
    common = dict(c_dim=0, img_resolution=32, img_channels=3)
    G = networks.Generator(z_dim=32, w_dim=32, **common, mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256))
    D = networks.Discriminator(**common, channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256,
                               epilogue_kwargs=dict(mbstd_group_size=4))
    _randomize(list(G.named_parameters()) + list(D.named_parameters()), bias_one=("affine.bias",))
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(32) * 0.5)
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G_ema.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    pipe = augment.AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                               brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    # Same construction as their training loop's snapshot.
    snapshot = dict(training_set_kwargs=dict(dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset",
                                                             resolution=32)))
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", pipe)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    # Keep the pickle structure but not NVIDIA's source text, which persistent objects embed.
    for name in ("G", "D", "G_ema", "augment_pipe"):
        for m in snapshot[name].modules():
            if hasattr(type(m), "_orig_module_src"):
                type(m)._orig_module_src = SOURCE_PLACEHOLDER
    with open(out / "network-snapshot-000000.pkl", "wb") as f:
        pickle.dump(snapshot, f)
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    Ge = snapshot["G_ema"]
    with torch.no_grad():
        img = Ge(z, None, noise_mode="const")
        ws = Ge.mapping(z, None)
        np.savez(out / "ada_golden.npz", z=z.numpy(), img_const=img.numpy(),
                 img_trunc07=Ge(z, None, truncation_psi=0.7, noise_mode="const").numpy(), ws=ws.numpy(),
                 img_nonoise=Ge.synthesis(ws, noise_mode="none").numpy(), d_logits=snapshot["D"](img, None).numpy())


def patch_rosinality(repo: Path) -> None:
    for rel, old, new in [("op/fused_act.py", "fused = load(", "fused = (lambda *a, **k: None)("),
                          ("op/upfirdn2d.py", "upfirdn2d_op = load(", "upfirdn2d_op = (lambda *a, **k: None)(")]:
        path = repo / rel
        path.write_text(path.read_text().replace(old, new))
    path = repo / "model.py"
    src = path.read_text()
    for old, new in [("4: 512,", "4: 16,"), ("8: 512,", "8: 16,"), ("16: 512,", "16: 8,"), ("32: 512,", "32: 4,")]:
        if src.count(old) != 2:
            raise SystemExit(f"unexpected rosinality model.py: {old!r} found {src.count(old)} times")
        src = src.replace(old, new)
    path.write_text(src)


def make_rosinality(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    from model import Discriminator, Generator
    torch.manual_seed(0)
    g, d = Generator(32, 32, 3, channel_multiplier=2), Discriminator(32, channel_multiplier=2)
    _randomize(list(g.named_parameters()) + list(d.named_parameters()), bias_one=("modulation.bias",))
    g_ema = Generator(32, 32, 3, channel_multiplier=2)
    g_ema.load_state_dict(g.state_dict())
    with torch.no_grad():
        for p in g_ema.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    g_ema.eval()
    latent_avg = g_ema.mean_latent(256).squeeze(0).detach()
    args = argparse.Namespace(size=32, latent=32, n_mlp=3, channel_multiplier=2, r1=10, path_regularize=2,
                              batch=4, iter=1, lr=0.002, mixing=0.9)
    g_optim = torch.optim.Adam(g.parameters(), lr=0.002, betas=(0.0, 0.99))
    d_optim = torch.optim.Adam(d.parameters(), lr=0.002, betas=(0.0, 0.99))
    # Keys of their train.py checkpoints, plus convert_weight.py's latent_avg.
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
                "g_optim": g_optim.state_dict(), "d_optim": d_optim.state_dict(), "args": args,
                "ada_aug_p": 0.0, "latent_avg": latent_avg}, out / "rosinality_000000.pt")
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img, _ = g_ema([z], randomize_noise=False)
        img_t, _ = g_ema([z], randomize_noise=False, truncation=0.7, truncation_latent=latent_avg.unsqueeze(0))
        np.savez(out / "rosinality_golden.npz", z=z.numpy(), img_const=img.numpy(), img_trunc07=img_t.numpy(),
                 d_logits=d(img).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["ada", "rosinality"])
    parser.add_argument("--repo", type=Path, required=True, help="checkout of the reference repository")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--patch-rosinality", action="store_true", help="edit the rosinality checkout first")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.which == "ada":
        make_ada(args.repo, args.out)
    else:
        if args.patch_rosinality:
            patch_rosinality(args.repo)
        make_rosinality(args.repo, args.out)


if __name__ == "__main__":
    main()
