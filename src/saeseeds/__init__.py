"""saeseeds: seed-stability studies of sparse autoencoders."""
