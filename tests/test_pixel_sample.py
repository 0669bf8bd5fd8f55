"""morph3d.ops.pixel_sample against torch.nn.functional.grid_sample (values and gradients)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from morph3d._ext import ops
from morph3d.ops import pixel_sample

COMBOS = list(itertools.product(["bilinear", "nearest"], ["zeros", "border"], [False, True]))
CUDA = torch.cuda.is_available()


def assert_close(actual, expected, tol=1e-5):
    """Max abs error <= tol * max(1, max |expected|): 1e-5 relative to the data's scale."""
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def reference(inputs, grid, grad_outputs, mode, padding, align_corners):
    """grid_sample on each input: outputs, input gradients, grid gradient (summed over inputs)."""
    outs, grads, grad_grid = [], [], torch.zeros_like(grid)
    for x, go in zip(inputs, grad_outputs):
        x = x.detach().clone().requires_grad_()
        g = grid.detach().clone().requires_grad_()
        out = F.grid_sample(x, g, mode=mode, padding_mode=padding, align_corners=align_corners)
        gx, gg = torch.autograd.grad(out, [x, g], go)
        outs.append(out.detach())
        grads.append(gx)
        grad_grid += gg
    return outs, grads, grad_grid


def run(inputs, grid, grad_outputs, **kw):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    grid = grid.detach().clone().requires_grad_()
    outs = pixel_sample(inputs, grid, **kw)
    torch.autograd.backward(outs, grad_outputs)
    return [o.detach() for o in outs], [x.grad for x in inputs], grid.grad


def random_case(gen, dtype=torch.float32, device="cpu"):
    B = int(torch.randint(1, 4, (), generator=gen))
    H, W = (int(v) for v in torch.randint(1, 18, (2,), generator=gen))
    Ho, Wo = (int(v) for v in torch.randint(1, 40, (2,), generator=gen))
    inputs = [torch.randn(B, c, H, W, generator=gen, dtype=dtype).to(device) for c in (3, 1, 6)]
    grid = (torch.rand(B, Ho, Wo, 2, generator=gen, dtype=dtype) * 2.8 - 1.4).to(device)  # partly outside [-1, 1]
    grad_outputs = [torch.randn(B, x.shape[1], Ho, Wo, generator=gen, dtype=dtype).to(device) for x in inputs]
    return inputs, grid, grad_outputs


@pytest.mark.parametrize("mode,padding,align_corners", COMBOS)
def test_matches_grid_sample(mode, padding, align_corners):
    gen = torch.Generator().manual_seed(COMBOS.index((mode, padding, align_corners)))
    kw = dict(mode=mode, padding=padding, align_corners=align_corners)
    for _ in range(4):
        inputs, grid, grad_outputs = random_case(gen)
        outs, grads, grad_grid = run(inputs, grid, grad_outputs, **kw)
        ref_outs, ref_grads, ref_grad_grid = reference(inputs, grid, grad_outputs, **kw)
        for a, b in zip(outs + grads, ref_outs + ref_grads):
            assert a.shape == b.shape
            assert_close(a, b)
        assert_close(grad_grid, ref_grad_grid)
        if mode == "nearest":
            assert torch.count_nonzero(grad_grid) == 0


@pytest.mark.parametrize("batch", [1, 3])
def test_threaded_schedules_match_grid_sample(batch):
    """Big enough to use the threads: whole batch items per thread (batch >= threads) or each item
    split by rows and channel pieces (batch 1)."""
    gen = torch.Generator().manual_seed(batch)
    inputs = [torch.randn(batch, c, 33, 31, generator=gen) for c in (3, 19)]
    grid = torch.rand(batch, 48, 50, 2, generator=gen) * 2.4 - 1.2
    grad_outputs = [torch.randn(batch, c, 48, 50, generator=gen) for c in (3, 19)]
    for mode, padding in (("bilinear", "zeros"), ("nearest", "border")):
        kw = dict(mode=mode, padding=padding, align_corners=False)
        outs, grads, grad_grid = run(inputs, grid, grad_outputs, **kw)
        ref_outs, ref_grads, ref_grad_grid = reference(inputs, grid, grad_outputs, **kw)
        for a, b in zip(outs + grads + [grad_grid], ref_outs + ref_grads + [ref_grad_grid]):
            assert_close(a, b)


def test_float64_and_odd_sizes_match_grid_sample():
    gen = torch.Generator().manual_seed(5)
    for H, W, Ho, Wo in [(1, 1, 3, 4), (1, 7, 5, 1), (9, 1, 2, 3), (13, 11, 17, 19)]:
        x = torch.randn(2, 4, H, W, generator=gen, dtype=torch.float64)
        grid = torch.rand(2, Ho, Wo, 2, generator=gen, dtype=torch.float64) * 3 - 1.5
        go = torch.randn(2, 4, Ho, Wo, generator=gen, dtype=torch.float64)
        for mode, padding, align_corners in COMBOS:
            kw = dict(mode=mode, padding=padding, align_corners=align_corners)
            (out,), (gx,), gg = run([x], grid, [go], **kw)
            (ref,), (ref_gx,), ref_gg = reference([x], grid, [go], **kw)
            for a, b in ((out, ref), (gx, ref_gx), (gg, ref_gg)):
                assert_close(a, b, tol=1e-12)


def test_identity_grid_returns_input():
    x = torch.randn(2, 3, 6, 9)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 6), torch.linspace(-1, 1, 9), indexing="ij")
    grid = torch.stack([xs, ys], -1).expand(2, 6, 9, 2)
    for mode in ("bilinear", "nearest"):
        out = pixel_sample(x, grid, mode=mode, align_corners=True)
        torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def grid_away_from_kinks(gen, B, Ho, Wo, H, W, align_corners):
    """Grids whose pixel coordinates stay >= 0.1 away from integers and half-integers
    (bilinear, border-clamp and nearest-rounding kinks), from 2 pixels outside to 2 inside."""
    frac = torch.rand(B, Ho, Wo, 2, generator=gen, dtype=torch.float64) * 0.3 + 0.1
    frac = torch.where(torch.rand(B, Ho, Wo, 2, generator=gen, dtype=torch.float64) < 0.5, frac, frac + 0.5)
    size = torch.tensor([W, H], dtype=torch.float64)
    base = torch.floor(torch.rand(B, Ho, Wo, 2, generator=gen, dtype=torch.float64) * (size + 4)) - 2
    pix = base + frac
    return pix / (size - 1) * 2 - 1 if align_corners else (2 * pix + 1) / size - 1


@pytest.mark.parametrize("mode,padding,align_corners", COMBOS)
def test_gradcheck_float64(mode, padding, align_corners):
    gen = torch.Generator().manual_seed(11)
    grid = grid_away_from_kinks(gen, 2, 3, 4, 5, 6, align_corners).requires_grad_()
    x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(grid, x, s):
        return tuple(pixel_sample([x, s], grid, mode=mode, padding=padding, align_corners=align_corners))

    assert torch.autograd.gradcheck(f, (grid, x, s), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_fused_equals_separate_calls():
    gen = torch.Generator().manual_seed(3)
    inputs, grid, grad_outputs = random_case(gen)
    for mode, padding, align_corners in COMBOS:
        kw = dict(mode=mode, padding=padding, align_corners=align_corners)
        outs, grads, grad_grid = run(inputs, grid, grad_outputs, **kw)
        sep_grid = torch.zeros_like(grid)
        for x, go, out, gx in zip(inputs, grad_outputs, outs, grads):
            (o,), (g,), gg = run([x], grid, [go], **kw)
            assert torch.equal(out, o) and torch.equal(gx, g)  # same arithmetic per channel
            sep_grid += gg
        assert_close(grad_grid, sep_grid)  # summed over inputs in another order


def test_single_tensor_and_partial_requires_grad():
    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    s = torch.randn(2, 2, 7, 8)
    grid = torch.rand(2, 5, 6, 2) * 2 - 1
    out = pixel_sample(x, grid)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 5, 6)
    a, b = pixel_sample((x, s), grid)
    (a.sum() + b.sum()).backward()
    ref = torch.autograd.grad(F.grid_sample(x, grid, align_corners=False).sum(), x)[0]
    assert_close(x.grad, ref)
    assert s.grad is None


def test_layouts_give_same_results():
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(2, 8, 9, 9, generator=gen)
    grid_bchw = torch.rand(2, 2, 6, 7, generator=gen) * 2.4 - 1.2
    grid = grid_bchw.permute(0, 2, 3, 1)  # non-contiguous (B, Ho, Wo, 2)
    go = torch.randn(2, 8, 6, 7, generator=gen)
    variants = {
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "transposed_hw": base.transpose(2, 3).contiguous().transpose(2, 3),
        "strided_view": torch.stack([base, torch.zeros_like(base)], 2)[:, :, 0],
    }
    want_out, want_grad, want_gg = run([base], grid.contiguous(), [go])
    for name, x in variants.items():
        assert not x.is_contiguous() and torch.equal(x, base)
        out, grads, gg = run([x], grid, [go])
        assert torch.equal(out[0], want_out[0]), name
        assert torch.equal(grads[0], want_grad[0]), name
        assert torch.equal(gg, want_gg), name
    # Mixed layouts in one fused call, a batch-expanded input and a stride-0 output gradient.
    one = base[:1].expand(2, -1, -1, -1)
    outs, grads, gg = run([variants["channels_last"], one], grid, [go, torch.ones(1).expand(2, 8, 6, 7)])
    ref_outs, ref_grads, ref_gg = reference([base, one.contiguous()], grid, [go, torch.ones(2, 8, 6, 7)],
                                            "bilinear", "zeros", False)
    for a, b in zip(outs + grads + [gg], ref_outs + ref_grads + [ref_gg]):
        assert_close(a, b)


def test_backward_is_deterministic_across_runs_threads_and_batching():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(3, 5, 12, 12, generator=gen)
    s = torch.randn(3, 4, 12, 12, generator=gen)
    grid = torch.rand(3, 64, 64, 2, generator=gen) * 0.2 - 0.1  # many outputs land on the same pixels
    gos = [torch.randn(3, 5, 64, 64, generator=gen), torch.randn(3, 4, 64, 64, generator=gen)]
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (threads, threads, 1):
            torch.set_num_threads(n)
            results.append(run([x, s], grid, gos))
        # Batch item by item (fewer items than threads: split by rows and channel pieces).
        torch.set_num_threads(max(2, threads))
        items = [run([x[i:i + 1], s[i:i + 1]], grid[i:i + 1], [g[i:i + 1] for g in gos]) for i in range(3)]
    finally:
        torch.set_num_threads(threads)
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first[1] + [first[2]], other[1] + [other[2]]):
            assert torch.equal(a, b)
    for i, item in enumerate(items):
        assert torch.equal(item[1][0][0], first[1][0][i]) and torch.equal(item[1][1][0], first[1][1][i])
        assert torch.equal(item[2][0], first[2][i])


def test_non_finite_values_behave_like_grid_sample():
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 0, 0] = float("inf")
    x[0, 1, 5, 5] = float("nan")
    grid = torch.rand(1, 8, 8, 2) * 3 - 1.5
    grid[0, 0, 0] = torch.tensor([-1.0, -1.0])  # the corner pixels are sampled by some outputs
    grid[0, 0, 1] = torch.tensor([1.0, 1.0])
    go = torch.randn(1, 2, 8, 8)
    for mode, padding, align_corners in COMBOS:
        kw = dict(mode=mode, padding=padding, align_corners=align_corners)
        g = grid.clone()
        if padding == "zeros":  # grid_sample's own border backward crashes on NaN coordinates
            g[0, 0, 2] = torch.tensor([float("nan"), 0.2])
        (out,), (gx,), _ = run([x], g, [go], **kw)
        (ref,), (ref_gx,), _ = reference([x], g, [go], **kw)
        torch.testing.assert_close(out, ref, equal_nan=True, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gx, ref_gx, equal_nan=True, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Errors

def test_clear_errors():
    x = torch.randn(2, 3, 5, 5)
    grid = torch.zeros(2, 4, 4, 2)
    with pytest.raises(ValueError, match="batch size"):
        pixel_sample(x, torch.zeros(3, 4, 4, 2))
    with pytest.raises(ValueError, match="share H and W"):
        pixel_sample([x, torch.randn(2, 1, 5, 6)], grid)
    with pytest.raises(TypeError, match="dtype"):
        pixel_sample([x, x.double()], grid)
    with pytest.raises(TypeError, match="float32 or float64"):
        pixel_sample(x.long(), grid.long())
    with pytest.raises(ValueError, match="one device"):
        pixel_sample(x.to("meta"), grid)
    with pytest.raises(ValueError, match=r"\(B, Ho, Wo, 2\)"):
        pixel_sample(x, torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match=r"\(B, Ho, Wo, 2\)"):
        pixel_sample(x, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pixel_sample(torch.randn(2, 5, 5), grid)
    with pytest.raises(ValueError, match="empty batch"):
        pixel_sample(torch.randn(0, 3, 5, 5), torch.zeros(0, 4, 4, 2))
    with pytest.raises(ValueError, match="empty image size"):
        pixel_sample(torch.randn(2, 3, 0, 5), grid)
    with pytest.raises(ValueError, match="mode"):
        pixel_sample(x, grid, mode="bicubic")
    with pytest.raises(ValueError, match="reflection"):
        pixel_sample(x, grid, padding="reflection")
    with pytest.raises(TypeError, match="align_corners"):
        pixel_sample(x, grid, align_corners=1)
    with pytest.raises(ValueError, match="empty"):
        pixel_sample([], grid)
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        pixel_sample([x, x.numpy()], grid)
    with pytest.raises(TypeError, match="grid"):
        pixel_sample(x, grid.numpy())


def test_raw_op_rejects_bad_arguments():
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(RuntimeError, match="grid"):
        ops().pixel_sample_forward([x], torch.zeros(2, 4, 4, 3), 0, 0, False)
    with pytest.raises(RuntimeError, match="batch"):
        ops().pixel_sample_forward([x], torch.zeros(1, 4, 4, 2), 0, 0, False)
    with pytest.raises(RuntimeError, match="grad_output"):
        ops().pixel_sample_backward([torch.zeros(2, 3, 4, 5)], [x], torch.zeros(2, 4, 4, 2), 0, 0, False, [True], True)


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)

@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("mode,padding,align_corners", COMBOS)
def test_cuda_matches_grid_sample(mode, padding, align_corners):
    gen = torch.Generator().manual_seed(1)
    kw = dict(mode=mode, padding=padding, align_corners=align_corners)
    for dtype in (torch.float32, torch.float64):
        inputs, grid, grad_outputs = random_case(gen, dtype, "cuda")
        outs, grads, grad_grid = run(inputs, grid, grad_outputs, **kw)
        ref_outs, ref_grads, ref_grad_grid = reference(inputs, grid, grad_outputs, **kw)
        for a, b in zip(outs + grads + [grad_grid], ref_outs + ref_grads + [ref_grad_grid]):
            assert a.device.type == "cuda"
            assert_close(a, b)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_backward_is_bitwise_deterministic():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 19, 32, 32, generator=gen).cuda()
    img = torch.randn(4, 3, 32, 32, generator=gen).cuda()
    grid = (torch.rand(4, 128, 128, 2, generator=gen) * 0.1 - 0.05).cuda()  # heavy collisions
    gos = [torch.randn(4, 19, 128, 128, generator=gen).cuda(), torch.randn(4, 3, 128, 128, generator=gen).cuda()]
    first = run([x, img], grid, gos)
    for _ in range(5):
        again = run([x, img], grid, gos)
        for a, b in zip(first[1] + [first[2]], again[1] + [again[2]]):
            assert torch.equal(a, b)
    ref = reference([x, img], grid, gos, "bilinear", "zeros", False)
    for a, b in zip(first[1], ref[1]):
        assert_close(a, b)
