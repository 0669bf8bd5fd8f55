"""Standalone differentiable tensor ops backed by morph3d's C++ / CUDA kernels."""
from .pixel_sample import pixel_sample

__all__ = ["pixel_sample"]
