"""Latent directions for face reenactment (Bounareli et al., "Finding Directions in GAN's Latent Space for
Neural Face Reenactment"): a matrix A maps a change of head pose / expression Delta p to a shift of the
first L W+ layers of a frozen StyleGAN2.

- ``config.py``: :class:`DirectionsConfig`; ``model.py``: :class:`Directions` (A and the rescaling of p);
- ``losses.py``: L_sh, L_eye, L_mouth, L_id, L_per, L_pix; ``method.py``: the ``directions`` training method;
- ``reenact.py``: inference (``gan-bridge reenact``); ``data.py``: inverted latents for mixed and paired
  training; ``evaluate.py``: CSIM / LPIPS / NME / pose / expression errors and the linear baseline.
"""
from .config import DirectionsConfig
from .model import Directions, load_directions, pose_range, pose_vector, save_directions
from .reenact import Reenactment, reenact_latents

__all__ = ["Directions", "DirectionsConfig", "Reenactment", "load_directions", "pose_range", "pose_vector",
           "reenact_latents", "save_directions"]
