"""``morph3d render``: a labelled contact sheet (image, mask, depth, normals, regions, flow) as PNG."""
from __future__ import annotations

import json
import math
from pathlib import Path

MIN_SIZE, MAX_SIZE = 16, 4096
DEFAULT_SIZE = 256


def add_parser(sub):
    p = sub.add_parser("render", help="render a model and parameters to a contact sheet PNG",
                       description="Render a face and write a contact sheet: image (with visible landmarks in "
                                   "green, hidden ones in red), mask, depth, normals, region segmentation and "
                                   "the flow to a second expression / pose.")
    p.add_argument("--model", default="open", help="'open' (the embedded default) or a model file (default: open)")
    p.add_argument("--params", help="FaceParams file (.json or .npz, as FaceParams.save writes); the first face "
                                    "is rendered. Default: the model's neutral frontal face")
    p.add_argument("--expression", nargs="+", action="extend", default=[], metavar="NAME=W",
                   help="set named expression weights, e.g. jaw_open=0.6 smile_left=1")
    for axis in ("yaw", "pitch", "roll"):
        p.add_argument(f"--{axis}", type=float, metavar="DEG", help=f"set the head {axis} in degrees")
    p.add_argument("--size", type=int, metavar="PX",
                   help=f"image side in pixels, {MIN_SIZE}-{MAX_SIZE} (default {DEFAULT_SIZE}, or the params "
                        "file's camera; with a params file the camera is rescaled so its longer side is PX)")
    p.add_argument("--flow-to-expression", nargs="+", action="extend", default=None, metavar="NAME=W",
                   help="expression weights of the second view for the flow panel (default: jaw_open=0.8 when "
                        "the model has it, else its first expression at 0.8)")
    p.add_argument("--flow-to-yaw", type=float, default=None, metavar="DEG",
                   help="yaw change of the second view in degrees (default 0, or 15 for a model without "
                        "expressions)")
    p.add_argument("--lighting", choices=("params", "ambient", "studio"), default=None,
                   help="'params': the params file's SH lighting; 'ambient': flat, shows the albedo; 'studio': "
                        "ambient plus a key light from the upper left (default: params with --params, else studio)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, help="output contact sheet (.png), written atomically")
    p.set_defaults(run=run)


def _fail(message: str):
    from morph3d.cli import CommandError
    raise CommandError(message)


def _weights(items: list[str], option: str) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            w = float(value)
        except ValueError:
            w = math.nan
        if not sep or not name or not math.isfinite(w):
            _fail(f"{option} takes NAME=WEIGHT pairs (e.g. jaw_open=0.5), got {item!r}")
        out[name] = w
    return out


def _set_expression(model, expression, weights: dict[str, float], option: str):
    expression = expression.clone()
    for name, w in weights.items():
        if name not in model.expression_names:
            known = ", ".join(model.expression_names) or "none"
            _fail(f"{option}: model '{model.name}' has no expression named {name!r}; available: {known}")
        expression[:, model.expression_names.index(name)] = w
    return expression


def _load_params(model, path: str, device):
    import torch
    from morph3d.model import FaceParams
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: parameter file not found")
    if p.suffix not in (".json", ".npz"):
        _fail(f"{p}: parameter files are .json or .npz")
    try:
        params = FaceParams.load(p, device=device)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, TypeError, IndexError, RuntimeError) as exc:
        _fail(f"{p}: not a readable FaceParams file ({type(exc).__name__}: {exc})")
    except ValueError as exc:
        _fail(f"{p}: invalid FaceParams ({exc})")
    for name, have, need in (("identity", params.identity.shape[1], model.identity_dim),
                             ("expression", params.expression.shape[1], model.expression_dim),
                             ("texture", params.texture.shape[1], model.albedo_dim)):
        if have != need:
            _fail(f"{p}: {have} {name} coefficients, but model '{model.name}' has {need}; "
                  "were these parameters fitted with another model?")
    params = params[0]
    if model.num_joints and params.articulation is None:
        params.articulation = torch.zeros(1, model.num_joints, 3, device=params.identity.device)
    for t in params.tensors().values():
        if not torch.isfinite(t).all():
            _fail(f"{p}: parameters contain NaN or infinite values")
    return params


def _check_displacement(model, params) -> None:
    """Refuse coefficients that move vertices further from the mean face than the face is large: such a
    mesh leaves the model's range (and can fall apart in the rasterizer, giving a blank image)."""
    import torch
    with torch.no_grad():
        verts = model.shape(params.identity, params.expression)  # articulation only rotates
    mean = model.vertices_mean
    size = float((mean.max(0).values - mean.min(0).values).norm())
    moved = float(torch.nan_to_num((verts[0] - mean).norm(dim=-1), nan=float("inf")).max())
    if not moved <= size:
        _fail(f"the identity / expression coefficients move vertices up to {moved:.3g} mm from the mean face, "
              f"which is only {size:.0f} mm across: use smaller weights (blendshapes are about 0-1, "
              "PCA coefficients a few standard deviations)")


def _rescaled(camera, size: int):
    h, w = camera.image_size
    scale = size / max(h, w)
    return camera.rescaled(scale, (max(1, round(h * scale)), max(1, round(w * scale))))


def studio_lighting(batch: int, device=None):
    """Ambient 0.65 plus a key light of strength 0.45 from the upper left, in front (camera frame), (B, 27)."""
    import torch
    from morph3d.model.lighting import sh_basis
    d = torch.tensor([-0.45, 0.5, 1.0])
    light = math.pi * 0.45 * sh_basis(d / d.norm())
    light[0] += 0.65 * math.sqrt(4.0 * math.pi)
    return light.repeat(3).expand(batch, 27).clone().to(device)


def framing_focal(model, size: int, distance: float, fill: float = 0.8) -> float:
    """Focal length (pixels) at which the mean face's height fills ``fill`` of a ``size`` pixel image."""
    y = model.vertices_mean[:, 1]
    return fill * size * distance / max(float(y.max() - y.min()), 1e-6)


def _default_flow_weights(model) -> dict[str, float]:
    if "jaw_open" in model.expression_names:
        return {"jaw_open": 0.8}
    if model.expression_dim:
        return {model.expression_names[0]: 0.8 if model.expression_kind == "blendshapes" else 2.0}
    return {}


def run(args) -> int:
    import torch

    from morph3d.io import check_output_file
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        _fail(f"--out {out}: the contact sheet is written as .png")
    check_output_file(out, "--out")
    if args.size is not None and not MIN_SIZE <= args.size <= MAX_SIZE:
        _fail(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {args.size}")
    weights = _weights(args.expression, "--expression")
    flow_weights = None if args.flow_to_expression is None else _weights(args.flow_to_expression,
                                                                          "--flow-to-expression")
    for axis in ("yaw", "pitch", "roll", "flow_to_yaw"):
        v = getattr(args, axis)
        if v is not None and not math.isfinite(v):
            _fail(f"--{axis.replace('_', '-')} must be a finite angle in degrees, got {v}")
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        _fail(f"--device {args.device!r} is not a torch device ({exc})")

    from morph3d.model import load_model
    from morph3d.display import (contact_sheet, depth_to_rgb, draw_points, flow_to_rgb, flow_wheel, linear_to_srgb,
                                 normals_to_rgb, save_png, segment_palette, segmentation_to_rgb)
    from morph3d.render import region_class_names, region_segmentation, render_face, render_flow
    model = load_model(args.model).to(device)
    if args.params:
        params = _load_params(model, args.params, device)
        if args.size is not None:
            params.camera = _rescaled(params.camera, args.size)
        h, w = params.camera.image_size
        if not (MIN_SIZE <= min(h, w) and max(h, w) <= MAX_SIZE):
            _fail(f"{args.params}: image size {h}x{w} is outside {MIN_SIZE}-{MAX_SIZE} pixels; pass --size")
    else:
        size = DEFAULT_SIZE if args.size is None else args.size
        params = model.default_params(1, (size, size))
        params.camera.focal[:] = framing_focal(model, size, float(-params.translation[0, 2]))
    lighting = args.lighting or ("params" if args.params else "studio")
    if lighting == "params" and not args.params:
        _fail("--lighting params needs --params FILE")
    if lighting == "studio":
        params.lighting = studio_lighting(1, device)
    elif lighting == "ambient":
        params.lighting = model.default_params(1).lighting.to(device)
    params.expression = _set_expression(model, params.expression, weights, "--expression")
    for k, axis in enumerate(("yaw", "pitch", "roll")):
        v = getattr(args, axis)
        if v is not None:
            params.rotation[:, k] = math.radians(v)

    flow_weights = _default_flow_weights(model) if flow_weights is None else flow_weights
    dyaw = args.flow_to_yaw if args.flow_to_yaw is not None else (0.0 if flow_weights else 15.0)
    second = params.clone()
    second.expression = _set_expression(model, second.expression, flow_weights, "--flow-to-expression")
    second.rotation[:, 0] += math.radians(dyaw)
    for view in (params, second):
        _check_displacement(model, view)

    with torch.no_grad():
        bg = torch.full((1, 3) + params.camera.image_size, 0.0134, device=device)  # dark grey
        r = render_face(model, params, background=bg)
        labels, _ = region_segmentation(model, r.rast)
        flow, valid = render_flow(model, params, second)
    vis = r.landmark_visible[0].cpu()
    colours = torch.where(vis[:, None], torch.tensor([0.2, 1.0, 0.3]), torch.tensor([1.0, 0.25, 0.2]))
    h, w = params.camera.image_size
    image = draw_points(linear_to_srgb(r.image[0]).cpu(), r.landmarks_2d[0].cpu(), colours, radius=max(1.0, w / 128))
    flow_rgb = flow_to_rgb(flow[0], valid[0]).cpu()
    inset = max(8, min(h, w) // 6)
    flow_rgb[:, h - inset - 2:h - 2, w - inset - 2:w - 2] = flow_wheel(inset)
    max_flow = float((flow[0].norm(dim=0) * valid[0, 0]).max())
    change = ", ".join(f"{k}={v:g}" for k, v in flow_weights.items()) or "neutral"
    if dyaw:
        change += f", yaw {dyaw:+g} deg"
    num_classes = len(model.region_names) + 1
    panels = [
        ("image + landmarks", image),
        ("mask", r.mask[0].cpu()),
        ("depth", depth_to_rgb(r.depth[0]).cpu()),
        ("normals", normals_to_rgb(r.normals[0]).cpu()),
        ("regions", segmentation_to_rgb(labels[0], num_classes).cpu()),
        (f"flow to {change}", flow_rgb),
    ]
    pose = ", ".join(f"{n} {math.degrees(float(a)):.0f}" for n, a in zip(("yaw", "pitch", "roll"), params.rotation[0]))
    expr = ", ".join(f"{k}={v:g}" for k, v in weights.items())
    title = f"{model.name.split(' (')[0]}  |  {pose} deg" + (f"  |  {expr}" if expr else "")
    legend = list(zip(region_class_names(model)[1:], segment_palette(num_classes)[1:].tolist()))
    notes = [f"landmarks: green visible, red hidden ({int(vis.sum())} of {int(model.landmark_valid.sum())} seen)  |  "
             f"depth: near = bright  |  normals: RGB = (n + 1) / 2, camera frame",
             f"flow: hue = direction (wheel), saturation = length up to {max_flow:.1f} px, white = still, "
             f"dark grey = occluded / not seen in the second view"]
    save_png(contact_sheet(panels, columns=3, title=title, legend=legend, notes=notes), out)
    print(f"wrote {out} ({h}x{w} panels)")
    return 0
