"""gan_bridge: generative models built on morph3d's 3D face model.

Layout (data flows one way, enforced by ``tests/gan_bridge/test_gb_import_contract.py``):

- ``networks/``: plain ``nn.Module``s (StyleGAN2, identity, perceptual, regressors); never import morph3d.
- ``face/``: the only place that imports morph3d (parameter codecs, rendering, face crops, face losses),
  through morph3d's public API.
- ``train/``: the one training loop shared by every method (config, checkpoints, logging, DDP).
- ``cli/``: the ``gan-bridge`` command.

morph3d never imports gan_bridge.
"""
__version__ = "0.1.0"
