"""Pure-PyTorch StyleGAN2 ops: FIR resampling (upfirdn2d), bias + activation, modulated convolution.

Everything here is differentiable by autograd (twice, as R1 and path-length regularisation need) and runs
on any device. Images and feature maps are ``(B, C, H, W)``; filters are 2-D ``(fh, fw)`` float tensors.
"""
import math

import torch
import torch.nn.functional as F

#: Gain that keeps the variance of a leaky ReLU (slope 0.2) output equal to that of its input.
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps=(1, 3, 3, 1), normalize: bool = True) -> torch.Tensor:
    """2-D separable FIR filter ``(n, n)`` from 1-D ``taps`` (outer product), normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"FIR taps must be a non-empty 1-D sequence, got shape {tuple(f.shape)}")
    f = torch.outer(f, f)
    return f / f.sum() if normalize else f


def _padding4(padding) -> tuple[int, int, int, int]:
    """``int``, ``(x, y)`` or ``(x0, x1, y0, y1)`` -> ``(x0, x1, y0, y1)``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, (x, y) or (x0, x1, y0, y1), got {padding}")
    return padding


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding=0,
              gain: float = 1.0, flip_filter: bool = False) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter ``f``, downsample by decimation.

    x: (B, C, H, W). f: (fh, fw). up/down: integer factors. padding: pixels added (negative: cropped)
    to the upsampled image, ``int``, ``(x, y)`` or ``(x0, x1, y0, y1)``. gain: multiplies the filter.
    flip_filter: False = true convolution, True = correlation (the same for symmetric filters).
    Returns (B, C, (H * up + y0 + y1 - fh) // down + 1, (W * up + x0 + x1 - fw) // down + 1).
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape (B, C, H, W), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    x0, x1, y0, y1 = _padding4(padding)
    if up > 1:  # zero insertion: sample i lands at i * up
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = f.to(dtype=x.dtype, device=x.device) * gain
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR upsampling by ``up`` keeping the image centred: (B, C, H, W) -> (B, C, H * up, W * up)."""
    fw = f.shape[-1]
    return upfirdn2d(x, f, up=up, padding=((fw + up - 1) // 2, (fw - up) // 2,
                                           (fw + up - 1) // 2, (fw - up) // 2), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """FIR downsampling by ``down``: (B, C, H, W) -> (B, C, H // down, W // down)."""
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "linear", alpha: float = 0.2,
             gain: float | None = None, clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """``clamp(act(x + b) * gain)``: bias along ``dim``, then ``'linear'``, ``'relu'`` or ``'lrelu'``.

    gain defaults to the activation's variance-preserving gain (sqrt(2) for relu/lrelu, 1 for linear);
    clamp (None = off) bounds the output to [-clamp, clamp].
    """
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
    elif act == "relu":
        x = F.relu(x)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}; use 'linear', 'relu' or 'lrelu'")
    if gain is None:
        gain = 1.0 if act == "linear" else LRELU_GAIN
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = LRELU_GAIN) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` with ``bias (C,)`` added along dim 1."""
    return bias_act(x, bias, act="lrelu", alpha=negative_slope, gain=scale)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1) -> torch.Tensor:
    """Convolution (``F.conv2d`` correlation) with FIR up- or down-sampling by 2.

    x: (B, Cin, H, W); w: (Cout, Cin // groups, k, k); f: the FIR filter, needed when up or down is 2.
    ``up=2``: transposed convolution (the kernel applied as a true convolution, as StyleGAN2 does) then
    the FIR filter, output (B, Cout, 2H, 2W) for padding = k // 2. ``down=2``: FIR filter then a strided
    convolution, output (B, Cout, H // 2, W // 2). Padding is that of the plain convolution.
    """
    cout, cin_g, kh, kw = w.shape
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    if f is None:
        raise ValueError("conv2d_resample needs the FIR filter f to resample")
    fw = f.shape[-1]
    if up > 1:
        if groups == 1:
            wt = w.transpose(0, 1)
        else:  # (G * Cout_g, Cin_g, k, k) -> (G * Cin_g, Cout_g, k, k)
            wt = w.reshape(groups, cout // groups, cin_g, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * cin_g, cout // groups, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        # The transposed conv has size (H - 1) * up + k; the filter brings it to H * up.
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up * up)
    p0 = padding + (fw - down + 1) // 2
    p1 = padding + (fw - down) // 2
    if kw == 1:
        x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, groups=groups)
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return F.conv2d(x, w, stride=down, groups=groups)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
                     eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN2 modulated (and demodulated) convolution as one grouped convolution.

    x: (B, Cin, H, W); weight: (Cout, Cin, k, k) already scaled as wanted; styles: (B, Cin), the
    per-sample input-channel scales. Demodulation divides each output channel's per-sample kernel by
    its L2 norm (``sqrt(sum w^2 + eps)``). ``up=2`` upsamples through ``conv2d_resample``.
    Returns (B, Cout, H * up, W * up) for padding = k // 2.
    """
    b, cin = styles.shape
    cout, _, kh, kw = weight.shape
    if x.shape[1] != cin or weight.shape[1] != cin:
        raise ValueError(f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
                         f"{tuple(styles.shape)} disagree on input channels")
    w = weight.unsqueeze(0) * styles.reshape(b, 1, cin, 1, 1)  # (B, Cout, Cin, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + eps).rsqrt()
    x = x.reshape(1, b * cin, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(b * cout, cin, kh, kw), f=resample_filter, up=up, padding=padding,
                        groups=b)
    return x.reshape(b, cout, *x.shape[2:])
