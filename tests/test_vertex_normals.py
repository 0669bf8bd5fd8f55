"""The fused vertex-normal kernels (torch.ops.morph3d.vertex_normals_*) against the pure-torch reference."""
import pytest
import torch

from morph3d._ext import built_with_cuda
from morph3d.model import load_model
from morph3d.model import normals_kernel
from morph3d.model.geometry import vertex_normals, vertex_normals_reference


def random_mesh(n=40, f=70, batch=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    vertices = torch.randn(batch, n, 3, generator=g, dtype=dtype)
    triangles = torch.randint(0, n - 5, (f, 3), generator=g)  # the last 5 vertices are unused
    return vertices, triangles


def with_grad(fn, vertices, triangles, grad):
    v = vertices.detach().clone().requires_grad_()
    out = fn(v, triangles)
    (g,) = torch.autograd.grad(out, v, grad)
    return out.detach(), g


@pytest.fixture(scope="module")
def open_model():
    return load_model("open")


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
def test_matches_reference_on_the_open_model(open_model, dtype, tol):
    g = torch.Generator().manual_seed(1)
    v = open_model.vertices_mean.to(dtype)[None] + torch.randn(3, open_model.num_vertices, 3, generator=g,
                                                                dtype=dtype)
    grad = torch.randn(v.shape, generator=g, dtype=dtype)
    out, gv = with_grad(vertex_normals, v, open_model.triangles, grad)
    ref, gr = with_grad(vertex_normals_reference, v, open_model.triangles, grad)
    assert out.dtype == dtype
    assert (out - ref).abs().max() <= tol
    # gradients scale with 1 / |sum of areas|: compare relative to their size
    assert (gv - gr).abs().max() <= tol * gr.abs().max()


def test_matches_reference_with_degenerate_and_unused_vertices():
    v, tri = random_mesh()
    v[:, 3] = v[:, 4]  # triangles through vertices 3 and 4 lose their area
    tri = torch.cat([tri, torch.tensor([[0, 0, 1], [2, 2, 2], [5, 6, 7], [3, 4, 8]])])
    v[:, 7] = 2 * v[:, 6] - v[:, 5]  # (5, 6, 7) collinear
    only_degenerate = 35  # used by a zero-area triangle only
    tri = torch.cat([tri, torch.tensor([[only_degenerate, only_degenerate, 1]])])
    grad = torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(3))
    out, gv = with_grad(vertex_normals, v, tri, grad)
    ref, gr = with_grad(vertex_normals_reference, v, tri, grad)
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    assert torch.allclose(gv, gr, atol=1e-9 * gr.abs().max().item(), rtol=0)
    unused = torch.arange(36, 40)
    assert torch.equal(out[:, unused], torch.zeros_like(out[:, unused]))
    assert torch.equal(gv[:, unused], torch.zeros_like(gv[:, unused]))
    assert torch.equal(out[:, only_degenerate], torch.zeros_like(out[:, only_degenerate]))


def test_gradcheck_float64():
    v, tri = random_mesh(n=16, f=20, batch=2)
    tri = torch.cat([tri, torch.tensor([[1, 1, 2]])])  # a repeated corner
    v = v.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, tri), (v,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bitwise_identical_for_any_thread_count(open_model, dtype):
    g = torch.Generator().manual_seed(2)
    # 4 x 7257 (batch item, vertex) tasks: several chunks, so 2 and 3 threads really split the work
    v = open_model.vertices_mean.to(dtype)[None] + torch.randn(4, open_model.num_vertices, 3, generator=g,
                                                                dtype=dtype)
    grad = torch.randn(v.shape, generator=g, dtype=dtype)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(with_grad(vertex_normals, v, open_model.triangles, grad))
    finally:
        torch.set_num_threads(threads)
    for out, gv in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(gv, results[0][1])


def test_topology_is_cached_per_tensor_and_rebuilt_after_in_place_edits():
    v, tri = random_mesh(dtype=torch.float32)
    first = normals_kernel.topology(tri, v.shape[1], v.device)
    assert normals_kernel.topology(tri, v.shape[1], v.device) is first
    tri[0] = torch.tensor([0, 1, 2])
    assert normals_kernel.topology(tri, v.shape[1], v.device) is not first
    assert torch.allclose(vertex_normals(v, tri), vertex_normals_reference(v, tri), atol=1e-5)


def test_inference_mode_triangles_are_not_cached():
    with torch.inference_mode():
        v, tri = random_mesh(dtype=torch.float32)
        assert torch.allclose(vertex_normals(v, tri), vertex_normals_reference(v, tri), atol=1e-5)


def test_adjacency_lists_every_corner_once_in_order():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3], [3, 3, 0]])
    offsets, others = torch.ops.morph3d.vertex_normals_topology(tri, 5)
    assert offsets.tolist() == [0, 2, 4, 6, 9, 9]
    # per vertex, in triangle order: the next two corners of each of its triangles
    assert others.tolist() == [[1, 2], [3, 3], [2, 0], [3, 2], [0, 1], [1, 3], [2, 1], [3, 0], [0, 3]]


def test_bad_triangles_raise_one_clear_error():
    v, _ = random_mesh(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"triangle indices must be in \[0, 40\)"):
        vertex_normals(v, torch.tensor([[0, 1, 40]]))
    with pytest.raises(ValueError, match="triangles must be"):
        vertex_normals(v, torch.tensor([0, 1, 2]))


def test_other_dtypes_use_the_reference():
    v, tri = random_mesh(dtype=torch.float16)
    assert not normals_kernel.supports(v)
    assert vertex_normals(v.float(), tri).shape == v.shape


@pytest.mark.cuda
@pytest.mark.skipif(not (torch.cuda.is_available() and built_with_cuda()), reason="needs CUDA and a CUDA build")
def test_cuda_matches_cpu():
    v, tri = random_mesh(n=500, f=900, batch=4)
    grad = torch.randn_like(v)
    out, gv = with_grad(vertex_normals, v, tri, grad)
    out_c, gv_c = with_grad(vertex_normals, v.cuda(), tri.cuda(), grad.cuda())
    assert torch.allclose(out_c.cpu(), out, atol=1e-12) and torch.allclose(gv_c.cpu(), gv, atol=1e-9)
    again = with_grad(vertex_normals, v.cuda(), tri.cuda(), grad.cuda())
    assert torch.equal(again[0], out_c) and torch.equal(again[1], gv_c)
