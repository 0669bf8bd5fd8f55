"""Face-specific glue between morph3d (public API only) and the networks."""
