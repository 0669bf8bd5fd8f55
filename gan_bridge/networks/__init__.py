"""Plain networks: ``nn.Module``s and functional ops that import nothing from morph3d."""
