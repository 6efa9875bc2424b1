"""Planning: cost estimates, calibration from finished runs, SLURM resources, model layouts."""
