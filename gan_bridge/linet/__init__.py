"""LI-Net: large-pose identity-preserving face reenactment (landmark transformer T, face rotation module R,
expression enhancing generator G), trained on the synthetic world with ``gan-bridge train linet``."""
