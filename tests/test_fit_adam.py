"""morph3d.fitting.adam.Adam: the same updates as torch.optim.Adam, bit for bit."""
import torch

from morph3d.fitting.adam import Adam


def test_matches_torch_adam_exactly():
    g = torch.Generator().manual_seed(0)
    ours = [torch.randn(5, 7, generator=g, dtype=dtype, requires_grad=True) for dtype in (torch.float32, torch.float64)]
    theirs = [t.detach().clone().requires_grad_(True) for t in ours]
    rates = (0.1, 0.003)
    mine = Adam(list(zip(ours, rates)))
    ref = torch.optim.Adam([{"params": [t], "lr": lr} for t, lr in zip(theirs, rates)])
    for step in range(25):
        for params, opt in ((ours, mine), (theirs, ref)):
            opt.zero_grad()
            loss = sum((p.sin() * (k + 1)).sum() + p.square().sum() for k, p in enumerate(params))
            if step % 5 == 4:  # a step where one tensor has no gradient
                loss = params[0].square().sum()
            loss.backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
