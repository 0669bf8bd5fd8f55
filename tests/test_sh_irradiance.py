"""The fused SH irradiance kernels (torch.ops.morph3d.sh_irradiance_*) against the nine-basis reference."""
import pytest
import torch

from morph3d.model.lighting import irradiance, irradiance_reference


def inputs(batch=2, n=50, dtype=torch.float64, seed=0, unit=True):
    g = torch.Generator().manual_seed(seed)
    normals = torch.randn(batch, n, 3, generator=g, dtype=dtype)
    if unit:
        normals = normals / normals.norm(dim=-1, keepdim=True)
    lighting = torch.randn(batch, 27, generator=g, dtype=dtype)
    grad = torch.randn(batch, n, 3, generator=g, dtype=dtype)
    return normals, lighting, grad


def value_and_grads(fn, normals, lighting, grad):
    n, light = normals.clone().requires_grad_(), lighting.clone().requires_grad_()
    out = fn(n, light)
    return (out.detach(), *torch.autograd.grad(out, (n, light), grad))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("unit", [True, False])
def test_matches_reference(dtype, tol, unit):
    # 9000 points: three reduction blocks per batch item; no gradient at every third point (background)
    normals, lighting, grad = inputs(n=9000, dtype=dtype, unit=unit)
    grad[:, ::3] = 0
    ours = value_and_grads(irradiance, normals, lighting, grad)
    ref = value_and_grads(irradiance_reference, normals, lighting, grad)
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        assert (a - b).abs().max() <= tol * max(1.0, b.abs().max().item())


def test_gradcheck_and_double_backward_float64():
    normals, lighting, _ = inputs(n=12)
    args = (normals.requires_grad_(), lighting.requires_grad_())
    assert torch.autograd.gradcheck(irradiance, args)
    assert torch.autograd.gradgradcheck(irradiance, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bitwise_identical_for_any_thread_count(dtype):
    normals, lighting, grad = inputs(batch=3, n=20000, dtype=dtype, seed=1)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(value_and_grads(irradiance, normals, lighting, grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(other, results[0]))


def test_only_one_input_needing_a_gradient():
    normals, lighting, grad = inputs()
    n = normals.clone().requires_grad_()
    (g,) = torch.autograd.grad(irradiance(n, lighting), n, grad)
    assert torch.allclose(g, value_and_grads(irradiance_reference, normals, lighting, grad)[1])


def test_broadcast_batch_uses_the_reference():
    normals, lighting, _ = inputs(batch=1)
    two = torch.cat([lighting, -lighting])
    out = irradiance(normals, two)  # one set of normals under two lightings: the reference broadcasts
    assert out.shape == (2, 50, 3) and torch.allclose(out[1], -out[0])
    with pytest.raises(ValueError, match="27 coefficients"):
        irradiance(normals, lighting[:, :9])
