"""Face-specific glue between morph3d (public API only) and the networks.

- ``world`` (+ ``layers``): the synthetic face world (renders with exact 3DMM ground truth, same-identity
  sets; ``layers`` draws its backgrounds, hair and clothing).
- ``crops`` / ``photos``: FFHQ crops, face-region weights, photo loading and picture writing.
- ``align`` / ``identity``: dlib's face-chip alignment and identity embeddings of photos.
- ``shape``: 3DMM shapes and the image -> 3DMM encoder for losses.
- ``rig``: 3DMM parameter subsets, rendering and losses for StyleRig / PIE.
- ``pas_prep``: PAS preprocessing (exposed side, similarity alignment, landmark segmentation maps).
- ``linet_prep``: landmark images and identity x expression x pose grids of the world for LI-Net.
- ``disco``: renders, masks and flows for DiscoFaceGAN's imitative and contrastive losses.
- ``param_table``: the fitted-parameter tables written by ``morph3d fit-table``.
"""
