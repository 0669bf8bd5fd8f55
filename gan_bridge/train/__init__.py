"""The training loop shared by every gan_bridge method."""
