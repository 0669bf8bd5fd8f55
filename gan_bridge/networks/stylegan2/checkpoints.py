"""Load StyleGAN2 generators / discriminators from the checkpoints people actually have.

Formats (detected from the file content, not its name):

- rosinality ``stylegan2-pytorch`` ``.pt``: ``{"g", "d", "g_ema", "latent_avg"?, "args"?, ...}`` read with
  ``torch.load(weights_only=True)``; its key names are renamed to ours and the architecture (resolution,
  channels per resolution, n_mlp, dims) is inferred from the key names and shapes. Without
  ``latent_avg`` (training checkpoints) ``w_avg`` is estimated as the mean w of 4096 seeded z's.
- NVIDIA ``stylegan2-ada-pytorch`` ``network-snapshot-*.pkl``: read with ``safe_pickle.restricted_load``
  (no code from the file runs); ``G_ema``/``G``/``D`` may also be plain dicts of tensors.
- our own files written by ``save_networks``, and plain dicts of tensors in our key layout
  (which is NVIDIA's: ``mapping.fc0.weight``, ``synthesis.b4.conv1.affine.weight``, ``b4.fc.weight``...).
"""
import argparse
import os
import pickle
import re
import zipfile

import torch

from .discriminator import Discriminator
from .generator import Generator
from .safe_pickle import PersistentRecord, UnsafePickleError, restricted_load

FORMAT_TAG = "gan_bridge.stylegan2"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as a StyleGAN2 network; the message is one line."""


def _read(path) -> object:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint file at {path}; check the path")
    try:
        if zipfile.is_zipfile(path):
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        with open(path, "rb") as f:
            obj = restricted_load(f)
        if isinstance(obj, int):  # legacy (non-zip) torch.save files start with a magic number
            return torch.load(path, map_location="cpu", weights_only=True)
        return obj
    except UnsafePickleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, OSError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable StyleGAN2 checkpoint (corrupt or truncated?): "
                              f"{first}") from None


def _tensor_dict(obj) -> dict | None:
    """``{name: tensor}`` from a PersistentRecord or a dict of tensors, else None."""
    if isinstance(obj, PersistentRecord):
        return obj.tensors()
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    return None


# ----------------------------------------------------------------------------- rosinality key renaming

def _rosinality_generator_to_ours(sd: dict) -> dict:
    """Rename a rosinality ``Generator.state_dict()`` to our layout (noise buffers become noise_const)."""
    out = {}
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    out["synthesis.b4.const"] = sd["input.input"][0]

    def styled(src, dst):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]

    def torgb(src, dst):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    styled("conv1", "synthesis.b4.conv1")
    torgb("to_rgb1", "synthesis.b4.torgb")
    n_blocks = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    names = ["synthesis.b4.conv1"]
    for k in range(n_blocks):
        res = 2 ** (k + 3)
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0")
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1")
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        names += [f"synthesis.b{res}.conv0", f"synthesis.b{res}.conv1"]
    for i, name in enumerate(names):
        if f"noises.noise_{i}" in sd:
            out[f"{name}.noise_const"] = sd[f"noises.noise_{i}"][0, 0]
    return out


def _rosinality_discriminator_to_ours(sd: dict) -> dict:
    """Rename a rosinality ``Discriminator.state_dict()`` to our layout."""
    n_res = len([k for k in sd if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k)])
    resolution = 4 * 2 ** n_res
    out = {f"b{resolution}.fromrgb.weight": sd["convs.0.0.weight"],
           f"b{resolution}.fromrgb.bias": sd["convs.0.1.bias"]}
    for j in range(1, n_res + 1):
        dst, src = f"b{resolution // 2 ** (j - 1)}", f"convs.{j}"
        out.update({f"{dst}.conv0.weight": sd[f"{src}.conv1.0.weight"], f"{dst}.conv0.bias": sd[f"{src}.conv1.1.bias"],
                    f"{dst}.conv1.weight": sd[f"{src}.conv2.1.weight"], f"{dst}.conv1.bias": sd[f"{src}.conv2.2.bias"],
                    f"{dst}.skip.weight": sd[f"{src}.skip.1.weight"]})
    out.update({"b4.conv.weight": sd["final_conv.0.weight"], "b4.conv.bias": sd["final_conv.1.bias"],
                "b4.fc.weight": sd["final_linear.0.weight"], "b4.fc.bias": sd["final_linear.0.bias"],
                "b4.out.weight": sd["final_linear.1.weight"], "b4.out.bias": sd["final_linear.1.bias"]})
    return out


# ----------------------------------------------------------------------------- architecture inference

def generator_config_from_state(sd: dict) -> dict:
    """Generator kwargs (resolution, dims, n_mlp, channels) inferred from our-layout key names and shapes."""
    res = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    n_mlp = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    if not res or n_mlp == 0 or "synthesis.b4.const" not in sd:
        raise CheckpointError("the tensors do not look like a StyleGAN2 generator (no mapping/synthesis keys)")
    return dict(resolution=res[-1], z_dim=sd["mapping.fc0.weight"].shape[1],
                w_dim=sd[f"mapping.fc{n_mlp - 1}.weight"].shape[0], n_mlp=n_mlp,
                img_channels=sd["synthesis.b4.torgb.weight"].shape[0],
                channels={r: sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res})


def discriminator_config_from_state(sd: dict) -> dict:
    """Discriminator kwargs inferred from our-layout key names and shapes."""
    res = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"b(\d+)\.conv0\.weight", k)))
    if not res or "b4.conv.weight" not in sd:
        raise CheckpointError("the tensors do not look like a StyleGAN2 discriminator (no b*/b4 keys)")
    c4 = sd["b4.conv.weight"].shape[0]
    return dict(resolution=res[-1], img_channels=sd[f"b{res[-1]}.fromrgb.weight"].shape[1],
                mbstd_num_channels=sd["b4.conv.weight"].shape[1] - c4,
                channels={**{r: sd[f"b{r}.conv0.weight"].shape[0] for r in res}, 4: c4})


def _load_into(module: torch.nn.Module, sd: dict, path) -> None:
    own = module.state_dict()
    sd = {k: v for k, v in sd.items() if k in own or not k.endswith("resample_filter")}
    missing = sorted(set(own) - set(sd) - {k for k in own if k.endswith("noise_const") or k.endswith("w_avg")})
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the inferred architecture "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: tensor {k} contains NaN or inf; the checkpoint is corrupt")
    module.load_state_dict(sd, strict=False)


def _nvidia_kwargs(record, kind: str) -> dict:
    """Checks and extra kwargs (conv_clamp, lr multiplier, mbstd group) from an NVIDIA record's init kwargs."""
    if not isinstance(record, PersistentRecord):
        return {}
    kw = record.init_kwargs
    if kw.get("c_dim", 0):
        raise CheckpointError(f"conditional StyleGAN2 (c_dim={kw['c_dim']}) is not supported; "
                              f"use an unconditional model")
    if kind == "G":
        syn, mapping = kw.get("synthesis_kwargs") or {}, kw.get("mapping_kwargs") or {}
        if syn.get("architecture", "skip") != "skip":
            raise CheckpointError(f"only the skip generator architecture is supported, got {syn['architecture']!r}")
        return dict(conv_clamp=syn.get("conv_clamp"), lr_multiplier=mapping.get("lr_multiplier", 0.01),
                    w_avg_beta=mapping.get("w_avg_beta", 0.995))
    if kw.get("architecture", "resnet") != "resnet":
        raise CheckpointError(f"only the resnet discriminator architecture is supported, got {kw['architecture']!r}")
    epi = kw.get("epilogue_kwargs") or {}
    return dict(conv_clamp=kw.get("conv_clamp"), mbstd_group_size=epi.get("mbstd_group_size", 4))


def _pick(obj: dict, names, path, what):
    for name in names:
        if name in obj and obj[name] is not None:
            return obj[name]
    raise CheckpointError(f"{path} has no {what} (looked for {', '.join(names)}; found {sorted(map(str, obj))[:6]})")


def _estimate_w_avg(G: Generator, n: int = 4096) -> None:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(z.to(G.w_avg.device), update_w_avg=False)[:, 0].mean(0))


def load_generator(path, device="cpu", ema: bool = True) -> Generator:
    """Generator from a rosinality ``.pt``, an NVIDIA ``.pkl``, our own file, or a dict of tensors.

    ema: take the EMA generator (``g_ema`` / ``G_ema``) when present, else the raw one.
    Returns the generator in eval mode on ``device``.
    """
    obj = _read(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    names = ("G_ema", "g_ema", "G", "g") if ema else ("G", "g", "G_ema", "g_ema")
    extra, w_avg = {}, None
    if obj.get("format") == FORMAT_TAG:
        cfg = dict(_pick(obj, ["generator_config"], path, "generator"))
        sd = obj["generator"]
    elif _tensor_dict(obj) is not None and any(k.startswith("synthesis.") for k in obj):
        sd = _tensor_dict(obj)
        cfg = generator_config_from_state(sd)
    else:
        entry = _pick(obj, names, path, "generator")
        sd = _tensor_dict(entry)
        if sd is None:
            raise CheckpointError(f"{path}: the generator entry is a {type(entry).__name__}, not network weights")
        if "input.input" in sd:
            sd = _rosinality_generator_to_ours(sd)
            w_avg = obj.get("latent_avg")
        extra = _nvidia_kwargs(entry, "G")
        cfg = {**generator_config_from_state(sd), **extra}
    G = Generator(**cfg)
    _load_into(G, sd, path)
    if w_avg is not None:
        G.mapping.w_avg.copy_(torch.as_tensor(w_avg).reshape(-1))
    elif "mapping.w_avg" not in sd:
        _estimate_w_avg(G)
    return G.eval().to(device)


def load_frozen_generator(path) -> Generator:
    """:func:`load_generator` with gradients off, for methods that train around a fixed generator; one-line
    errors for an empty or missing ``path``."""
    if not path:
        raise ValueError("no generator given; set generator=PATH (a StyleGAN2 checkpoint)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"generator checkpoint {path} does not exist")
    return load_generator(path).requires_grad_(False)


def load_discriminator(path, device="cpu") -> Discriminator:
    """Discriminator from a rosinality ``.pt``, an NVIDIA ``.pkl``, our own file or a dict of tensors."""
    obj = _read(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    extra = {}
    if obj.get("format") == FORMAT_TAG:
        cfg = dict(_pick(obj, ["discriminator_config"], path, "discriminator"))
        sd = obj["discriminator"]
    elif _tensor_dict(obj) is not None and "b4.conv.weight" in obj:
        sd = _tensor_dict(obj)
        cfg = discriminator_config_from_state(sd)
    else:
        entry = _pick(obj, ("D", "d"), path, "discriminator")
        sd = _tensor_dict(entry)
        if sd is None:
            raise CheckpointError(f"{path}: the discriminator entry is a {type(entry).__name__}, not network weights")
        if "final_linear.0.weight" in sd:
            sd = _rosinality_discriminator_to_ours(sd)
        extra = _nvidia_kwargs(entry, "D")
        cfg = {**discriminator_config_from_state(sd), **extra}
    D = Discriminator(**cfg)
    _load_into(D, sd, path)
    return D.eval().to(device)


def save_networks(path, G: Generator | None = None, D: Discriminator | None = None) -> None:
    """Write G and/or D (configs + state dicts) to ``path`` for ``load_generator`` / ``load_discriminator``."""
    data = {"format": FORMAT_TAG}
    if G is not None:
        data.update(generator=G.state_dict(), generator_config=G.config)
    if D is not None:
        data.update(discriminator=D.state_dict(), discriminator_config=D.config)
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise CheckpointError(f"cannot write {path}: {parent} is missing or not writable")
    try:
        torch.save(data, os.fspath(path))
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"cannot write {path}: {e}; check the disk and permissions") from None
