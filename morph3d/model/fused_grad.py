"""Double backward for the fused ops, whose C++ kernels only give first derivatives."""
import torch


def differentiable_grad(fn, inputs: tuple, grad: torch.Tensor) -> tuple:
    """Gradients of <grad, fn(*inputs)> with a graph (for double backward through a fused op whose
    kernels only give first derivatives); None for inputs that need none."""
    wanted = [t for t in inputs if t.requires_grad]
    with torch.enable_grad():
        found = iter(torch.autograd.grad(fn(*inputs), wanted, grad, create_graph=True) if wanted else ())
    return tuple(next(found) if t.requires_grad else None for t in inputs)
