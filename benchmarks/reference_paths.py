"""Switch morph3d back to the code paths issue 16 replaced, to time "before" and "now" in one process.

Inside :func:`reference_paths`: vertex normals by the pure-torch gathers + ``index_add``
(``geometry.vertex_normals_reference``), SH irradiance and shading from the nine basis functions
(``lighting.irradiance_reference``), and the photometric fit's optimiser ``torch.optim.Adam``
(whose first use in a process imports ``torch._dynamo``).
"""
import contextlib

import torch

import morph3d.fitting.photometric as photometric
import morph3d.model.lighting as lighting
import morph3d.model.morphable_model as morphable_model
from morph3d.model.geometry import vertex_normals_reference


class TorchAdam(torch.optim.Adam):
    """``torch.optim.Adam`` behind ``morph3d.fitting.adam.Adam``'s constructor."""

    def __init__(self, groups):
        super().__init__([{"params": [p], "lr": lr} for p, lr in groups])


def _reference_scaled_irradiance(normals, light, scale):
    return lighting.irradiance_reference(normals, light) * scale


@contextlib.contextmanager
def reference_paths():
    """Run the model, the renderer's shading and the photometric fit on the replaced code paths."""
    patches = [(morphable_model, "vertex_normals", vertex_normals_reference),
               (lighting, "_scaled_irradiance", _reference_scaled_irradiance),
               (photometric, "irradiance", lighting.irradiance_reference),
               (photometric, "Adam", TorchAdam)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
