"""The latent browser: a static folder per SAE set, built from what the study computed."""
