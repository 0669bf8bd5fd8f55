"""morph3d: a differentiable-rendering 3D morphable face toolkit.

Coordinate conventions are documented once, in ``docs/conventions.md``.
"""
__version__ = "0.1.0"
