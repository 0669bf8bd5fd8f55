"""DiscoFaceGAN (Deng et al. 2020): a StyleGAN2 fed 3DMM factors lambda = [alpha, beta, gamma, theta] through
per-factor VAE decoders plus noise epsilon, trained with adversarial, imitative and contrastive losses."""
from .config import DiscoConfig
from .vae import FACTORS, FactorVAE, LambdaVAEs, factor_dims, latent_sizes

__all__ = ["DiscoConfig", "FACTORS", "FactorVAE", "LambdaVAEs", "factor_dims", "latent_sizes"]
