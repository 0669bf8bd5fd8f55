"""A stub world for the StyleRig / PIE tests where the right answers are known.

The generator renders the parameters of its W+ code and writes the code itself into the image (channel
0, the first rows, above the face); the encoder reads it back (the mean over layers) into 3DMM parameters
of the ``open`` model: rotation = code 0..2, expression 0..3 = code 3..6, SH coefficient 2 of every
channel = ambient + code 7. A
:class:`SlotRig` writes ``gain`` x the wanted parameters into those code entries of every layer, so with
gain 1 it edits perfectly."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from gan_bridge.face.shape import FaceCoefficients
from morph3d.model import default_params, load_model
from morph3d.render import FaceRenderer, RenderSettings, linear_to_srgb

SLOTS = {"pose": slice(0, 3), "expression": slice(3, 7), "lighting": slice(7, 8)}


def code_params(code, model, size):
    """(B, w_dim) code -> FaceParams of the open model in a size x size camera (see the module docstring)."""
    m = model
    p = default_params(m.identity_dim, m.expression_dim, m.albedo_dim, code.shape[0], (size, size))
    light = p.lighting.view(-1, 3, 9).clone()
    light[..., 2] = light[..., 2] + code[:, 7:8]
    return replace(p, rotation=code[:, SLOTS["pose"]], lighting=light.flatten(1),
                   expression=torch.cat([code[:, SLOTS["expression"]], p.expression[:, 4:]], 1))


def read_code(images, num_ws, w_dim):
    b, r = images.shape[0], images.shape[-1]
    rows = -(-num_ws * w_dim // r)
    return images[:, 0, :rows].flatten(1)[:, :num_ws * w_dim].view(b, num_ws, w_dim).mean(1)


class CodeGenerator(nn.Module):
    """The image of a code is the rendering of its parameters, with the code itself in its top rows."""

    def __init__(self, resolution: int = 32, z_dim: int = 8, w_dim: int = 16, num_ws: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.resolution, self.z_dim, self.w_dim, self.num_ws = resolution, z_dim, w_dim, num_ws
        self.register_buffer("map", torch.randn(z_dim, w_dim, generator=g) * 0.2 / z_dim ** 0.5)
        self.model = load_model("open")
        self.renderer = FaceRenderer(self.model, RenderSettings(outputs=("image",)))

    def mapping(self, z, truncation_psi: float = 1.0, update_w_avg: bool = False):
        return (z @ self.map * truncation_psi)[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode: str = "const", noise=None):
        b, r = ws.shape[0], self.resolution
        code = ws.flatten(1)
        rows = -(-code.shape[1] // r)
        top = torch.nn.functional.pad(code, (0, rows * r - code.shape[1])).view(b, 1, rows, r)
        params = code_params(ws.mean(1), self.model, r)
        image = linear_to_srgb(self.renderer(params).image.clamp(0, 1)) * 2 - 1
        return torch.cat([torch.cat([top, image[:, :1, rows:]], 2), image[:, 1:]], 1)


class CodeEncoder(nn.Module):
    def __init__(self, num_ws: int = 4, w_dim: int = 16):
        super().__init__()
        self.model = load_model("open")
        self.num_ws, self.w_dim = num_ws, w_dim

    def forward(self, images):
        p = code_params(read_code(images, self.num_ws, self.w_dim), self.model, images.shape[-1])
        return FaceCoefficients(p.identity, p.expression, p.rotation, self.model(p).landmarks_2d, p)


class SlotRig(nn.Module):
    """rignet(v, theta^tau): v with the code entries of ``mode`` set to ``gain`` x theta^tau (every layer)."""

    def __init__(self, mode: str, gain: float = 1.0, num_ws: int = 4, w_dim: int = 16):
        super().__init__()
        self.mode, self.gain, self.num_ws, self.w_dim = mode, gain, num_ws, w_dim

    def check_generator(self, G):
        pass

    def forward(self, v, theta):
        v = v.clone()
        if self.mode == "pose":
            v[:, :, 0:3] = self.gain * theta[:, None]
        elif self.mode == "expression":
            v[:, :, 3:7] = self.gain * theta[:, None, :4]
        else:
            v[:, :, 7] = self.gain * theta[:, None, 2]  # ambient light has no coefficient 2
        return v
