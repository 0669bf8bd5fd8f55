"""Reader for dlib's serialized metric-learning ResNet (``dlib_face_recognition_resnet_model_v1.dat``).

The format was learnt from dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h`` and
``cuda/tensor.h`` (davisking/dlib); this is an independent reader, written with numpy only.

Stream layout (all integers little-endian, variable length):
- integer: one control byte (low 4 bits = number of value bytes, bit 0x80 = negative), then the bytes;
- float/double: ``mantissa`` (int) and ``exponent`` (int), value = mantissa * 2**exponent;
- string: length (integer) then the bytes; bool: the character ``'0'`` or ``'1'``;
- tensor: version 2, num_samples, k, nr, nc, then raw little-endian float32 values;
- a network is serialized from the loss layer down: first the version of every wrapper (layer, tag,
  skip) from the top to the input, then, from the input up, each layer's details followed by its
  bookkeeping (3 bools and 3 cached tensors, which are empty in a saved model).

The layer sequence is not self-describing (tags and skips carry no name), so the reader follows the
known architecture, given as a list of kinds from the input up, and checks every layer name it meets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WRAPPERS = ("tag", "skip")


class DlibFormatError(ValueError):
    """The file is not the dlib network it should be (truncated, corrupt, or another model)."""


@dataclass
class DlibLayer:
    """One computational layer: ``kind`` (``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``,
    ``add_prev``, ``fc``, ``input``), integer ``config`` and float32 ``params`` arrays."""

    kind: str
    config: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


class _Stream:
    """A cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: not a readable dlib face-recognition network ({what} at byte "
                               f"{self.pos}); reinstall face-recognition-models or pass the right .dat file")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail("unexpected end of file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self.take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise self.fail("bad integer")
        value = int.from_bytes(self.take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("old text-format float")
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's markers for inf / -inf / nan
            raise self.fail("non-finite number")
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail("bad bool")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if n > 256:
            raise self.fail("implausible string")
        return self.take(n).decode("latin-1")

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise self.fail("unknown tensor version")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail("negative tensor size")
        count = int(np.prod(shape))
        values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[int, ...]:
        if self.int() != 1:
            raise self.fail("unknown alias_tensor version")
        return tuple(self.int() for _ in range(4))


def _split(flat: np.ndarray, shapes: list[tuple[int, ...]], s: _Stream) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into its alias views (consecutive, in order)."""
    flat = flat.reshape(-1)
    out, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(flat[offset:offset + n].reshape(shape))
        offset += n
    if offset != flat.size:
        raise s.fail("parameter sizes do not add up")
    return out


def _read_details(s: _Stream, kind: str) -> DlibLayer:
    name = s.string()
    expected = {"input": ("input_rgb_image_sized", "input_rgb_image"), "con": ("con_4", "con_5", "con_6"),
                "affine": ("affine_", "affine_2"), "relu": ("relu_", "relu_2"), "max_pool": ("max_pool_2",),
                "avg_pool": ("avg_pool_2",), "add_prev": ("add_prev_",), "fc": ("fc_2", "fc_3")}[kind]
    if name not in expected:
        raise s.fail(f"found layer {name!r} where a {kind} layer belongs")
    layer = DlibLayer(kind)
    if kind == "input":
        layer.config["mean_rgb"] = tuple(s.float() for _ in range(3))
        if name == "input_rgb_image_sized":
            layer.config["size"] = (s.int(), s.int())
    elif kind == "con":
        flat = s.tensor()
        n, nr, nc, sy, sx, py, px = (s.int() for _ in range(7))
        filters, biases = _split(flat, [s.alias(), s.alias()], s)
        for _ in range(4):
            s.float()  # learning-rate and weight-decay multipliers
        if name in ("con_5", "con_6") and not s.bool():
            biases = np.zeros_like(biases)
        if name == "con_6" and s.bool():
            raise s.fail("fused relu in a convolution is not supported")
        layer.config.update(filters=n, kernel=(nr, nc), stride=(sy, sx), padding=(py, px))
        layer.params.update(weight=filters, bias=biases.reshape(-1))
    elif kind == "affine":
        flat = s.tensor()
        gamma, beta = _split(flat, [s.alias(), s.alias()], s)
        layer.config["mode"] = s.int()
        if name == "affine_2" and s.bool():
            gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
        layer.params.update(gamma=gamma.reshape(-1), beta=beta.reshape(-1))
    elif kind == "relu":
        if name == "relu_2" and s.bool():
            raise s.fail("disabled relu is not supported")
    elif kind in ("max_pool", "avg_pool"):
        nr, nc, sy, sx, py, px = (s.int() for _ in range(6))
        layer.config.update(kernel=(nr, nc), stride=(sy, sx), padding=(py, px))
    elif kind == "fc":
        n_out, n_in = s.int(), s.int()
        flat = s.tensor()
        shapes = [s.alias(), s.alias()]
        bias_mode = s.int()
        for _ in range(4):
            s.float()
        use_bias = s.bool() if name == "fc_3" else True
        weights = flat.reshape(-1)[:n_in * n_out].reshape(n_in, n_out)
        if shapes[0][:2] != (n_in, n_out):
            raise s.fail("fc weight shape")
        layer.config.update(outputs=n_out, inputs=n_in, has_bias=bias_mode == 0 and use_bias)
        layer.params["weight"] = weights
    return layer


def read_dlib_net(path: str | Path, architecture: list[str]) -> list[DlibLayer]:
    """Parse a dlib ``loss_metric`` network saved with ``serialize(net, out)``.

    ``architecture``: the kinds from the input up: ``input`` first, then ``con``, ``affine``, ``relu``,
    ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``, ``tag`` and ``skip``, exactly as the C++ type nests.
    Returns the non-wrapper layers from the input up. Raises :class:`DlibFormatError` on any mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib network file not found; install face-recognition-models "
                                "(`pip install -e .[detect]`)")
    s = _Stream(path.read_bytes(), str(path))
    if architecture[0] != "input":
        raise ValueError("architecture must start with 'input'")
    if s.int() != 1:
        raise s.fail("no loss-layer header")
    loss = s.string()
    if loss not in ("loss_metric_", "loss_metric_2"):
        raise s.fail(f"loss layer {loss!r} is not dlib's metric loss")
    if loss == "loss_metric_2":
        s.float(), s.float()  # margin, distance threshold: training only
    # wrapper versions, top to bottom (the input layer has none of its own)
    versions = [s.int() for _ in architecture[1:]][::-1]
    for kind, version in zip(architecture[1:], versions):
        if not (1 <= version <= 3) or (kind in WRAPPERS and version > 2):
            raise s.fail(f"bad version {version} for a {kind} wrapper")
    layers = [_read_details(s, "input")]
    for i, kind in enumerate(architecture[1:]):
        if kind in WRAPPERS:
            continue
        layers.append(_read_details(s, kind))
        for _ in range(3):
            s.bool()  # setup called, gradient stale, output disabled
        s.tensor(), s.tensor()  # x_grad, cached output
        if i == 0:  # the add_layer over the input keeps grad_final and (version 3) its expansion factor
            s.tensor()
            if versions[0] >= 3:
                s.int()
        elif versions[i] >= 2:
            s.tensor()  # params_grad
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} trailing bytes")
    return layers
