"""StyleRig and PIE: semantic editing of head pose, expression and lighting through a StyleGAN2.

- ``rignet.py``: :class:`RigNet`, v_hat = rignet(v, theta^tau), one per control mode;
- ``losses.py`` / ``method.py``: its self-supervised training (``gan-bridge train stylerig mode=pose``);
- ``pie.py``: PIE's embedding energy for real portraits, minimised by :mod:`gan_bridge.inversion`;
- ``edit.py``: edits and sequential edits across RigNets, with PIE's feedback correction.
"""
from .config import PIEConfig, StyleRigConfig
from .rignet import RigNet, load_rignet, load_rignets, save_rignet, transform_params

__all__ = ["PIEConfig", "RigNet", "StyleRigConfig", "load_rignet", "load_rignets", "save_rignet", "transform_params"]
