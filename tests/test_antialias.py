"""antialias: box-filter coverage at silhouettes, silhouette detection, gradient sign and size."""
import numpy as np
import torch

from morph3d.render.rasterize import antialias, interpolate, rasterize
from raster_reference import icosphere, perspective_clip

H = W = 16


def _ndc_x(px: float) -> float:
    """NDC x of a pixel-space x coordinate (pixel centres at integers)."""
    return (2 * px + 1) / W - 1


def _white_over_black(pos, tri):
    rast = rasterize(pos, tri, (H, W))
    color = (rast[..., 3:4] > 0).to(pos.dtype)
    return rast, color, antialias(color, rast, pos, tri)


def _big_triangle_with_vertical_edge(edge_px: float):
    # Right edge vertical at pixel x = edge_px; the triangle spans far beyond the screen elsewhere.
    x = _ndc_x(edge_px)
    return torch.tensor([[[-5.0, -5.0, 0, 1], [x, -5.0, 0, 1], [x, 5.0, 0, 1]]], dtype=torch.float64)


def test_vertical_edge_gives_exact_box_coverage():
    tri = torch.tensor([[0, 1, 2]])
    for edge, pixel, coverage in [(7.3, 7, 0.8), (7.7, 8, 0.2), (7.5, 7, 1.0), (7.05, 7, 0.55)]:
        _, color, out = _white_over_black(_big_triangle_with_vertical_edge(edge), tri)
        row = out[0, 8, :, 0]
        # Box filter of the 1 px wide pixel around its centre: covered fraction of [p - .5, p + .5].
        assert abs(row[pixel].item() - coverage) < 1e-9, (edge, row)
        others = torch.ones(W, dtype=torch.bool)
        others[pixel] = False
        torch.testing.assert_close(row[others], color[0, 8, :, 0][others])


def test_interior_edges_are_not_blended_but_silhouettes_are():
    # A quad of two triangles with different colours: the shared diagonal is not a silhouette.
    pos = torch.tensor([[[-0.63, -0.71, 0, 1], [0.69, -0.67, 0, 1], [0.71, 0.66, 0, 1], [-0.68, 0.7, 0, 1]]],
                       dtype=torch.float64)
    quad = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = rasterize(pos, quad, (H, W))
    color = torch.where(rast[..., 3:4] == 1, 1.0, 0.0).double() + (rast[..., 3:4] == 2).double() * 0.5
    out = antialias(color, rast, pos, quad)
    ids = rast[0, ..., 3]
    interior = torch.zeros(H, W, dtype=torch.bool)
    interior[3:13, 3:13] = True  # well inside the quad
    assert (ids[interior] > 0).all()
    assert torch.equal(out[0][interior], color[0][interior])
    changed = (out != color).any(-1)[0]
    assert changed.any() and not (changed & interior).any()
    # The same two triangles folded (second one flipped to face away) make the diagonal a silhouette.
    folded = pos.clone()
    folded[0, 3, :2] = torch.tensor([0.2, -0.3], dtype=torch.float64)  # vertex 3 on the other side of 0-2
    rast_f = rasterize(folded, quad, (H, W))
    col_f = (rast_f[..., 3:4] == 1).double()
    out_f = antialias(col_f, rast_f, folded, quad)
    assert (out_f != col_f).any()


def test_moving_an_edge_outward_increases_the_image_sum():
    tri = torch.tensor([[0, 1, 2]])
    pos = _big_triangle_with_vertical_edge(7.3).requires_grad_(True)
    _, _, out = _white_over_black(pos, tri)
    out.sum().backward()
    # Moving the right edge (vertices 1 and 2) right by one pixel adds one pixel per row: +16.
    dx_per_pixel = 2 / W
    gain = (pos.grad[0, 1, 0] + pos.grad[0, 2, 0]).item() * dx_per_pixel
    assert abs(gain - H) < 1e-6
    assert abs(pos.grad[0, 0, 0].item()) < 1e-12  # the far vertex has no visible silhouette


def test_silhouette_gradient_of_area_matches_geometry():
    # White triangle over black: d(image sum) / d(scale about the centroid) ~ d(area) / d(scale).
    base = torch.tensor([[-0.61, -0.52], [0.67, -0.43], [0.05, 0.71]], dtype=torch.float64)
    centre = base.mean(0)
    tri = torch.tensor([[0, 1, 2]])
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    xy = centre + (base - centre) * scale
    pos = torch.cat([xy, torch.zeros(3, 1, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)], 1)[None]
    # Use a larger image so the silhouette is long compared with a pixel.
    rast = rasterize(pos, tri, (64, 64))
    color = (rast[..., 3:4] > 0).double()
    antialias(color, rast, pos, tri).sum().backward()
    e1, e2 = base[1] - base[0], base[2] - base[0]
    area_px = 0.5 * abs((e1[0] * e2[1] - e1[1] * e2[0]).item()) * (64 / 2) ** 2
    expected = 2 * area_px  # d(area s^2)/ds at s = 1
    assert scale.grad.item() > 0
    assert abs(scale.grad.item() - expected) < 0.1 * expected


def test_antialiased_sum_tracks_area_continuously():
    # Sub-pixel shifts: the antialiased coverage sum follows the true area to within a few %.
    tri = torch.tensor([[0, 1, 2]])
    sums = []
    for shift in np.linspace(0, 1, 6):
        base = torch.tensor([[-0.61, -0.52], [0.67, -0.43], [0.05, 0.71]], dtype=torch.float64)
        base[:, 0] += shift * 2 / 64
        pos = torch.cat([base, torch.zeros(3, 1, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)], 1)
        rast = rasterize(pos[None], tri, (64, 64))
        color = (rast[..., 3:4] > 0).double()
        sums.append(antialias(color, rast, pos[None], tri).sum().item())
    e1 = np.array([0.67 + 0.61, -0.43 + 0.52])
    e2 = np.array([0.05 + 0.61, 0.71 + 0.52])
    area = 0.5 * abs(e1[0] * e2[1] - e1[1] * e2[0]) * 32 ** 2
    assert max(abs(s - area) for s in sums) < 0.02 * area


def test_gradcheck_color_and_positions():
    verts, tri = icosphere(1)
    pos = torch.tensor(perspective_clip(verts * 1.1))[None]
    tri = torch.tensor(tri)
    rast = rasterize(pos, tri, (12, 12))
    color = torch.rand(1, 12, 12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    color = (color * (rast[..., 3:4] > 0)).requires_grad_(True)
    p = pos.clone().requires_grad_(True)
    out = antialias(color, rast, p, tri)
    assert (out != color).any()
    assert torch.autograd.gradcheck(lambda c, q: antialias(c, rast, q, tri), (color, p), eps=1e-7, atol=1e-6)


def test_full_pipeline_silhouette_gradient_matches_finite_differences():
    # rasterize + interpolate + antialias of a sphere over a black background: moving the sphere
    # right changes the image mostly at the silhouette; finite differences over 0.2 px steps
    # (the antialiased image varies continuously) agree with the analytic derivative.
    verts, tri = icosphere(3)
    tri = torch.tensor(tri)
    base = torch.tensor(perspective_clip(verts))[None]
    attr = torch.ones(base.shape[1], 1, dtype=torch.float64)
    ramp = torch.linspace(0.5, 1.5, 48, dtype=torch.float64)[None, None, :, None]

    def image_sum(p):
        rast = rasterize(p, tri, (48, 48))
        return (antialias(interpolate(attr, rast, tri), rast, p, tri) * ramp).sum()

    shift = torch.zeros_like(base)
    shift[..., 0] = base[..., 3]  # translate by dx in NDC: X += dx * W
    p = base.clone().requires_grad_(True)
    image_sum(p).backward()
    analytic = (p.grad * shift).sum().item()
    h = 0.2 * 2 / 48
    numeric = ((image_sum(base + h * shift) - image_sum(base - h * shift)) / (2 * h)).item()
    assert analytic > 0  # the brighter right side gains coverage
    assert abs(analytic - numeric) < 0.1 * abs(numeric)
