"""dlrun's SLURM launcher for Hydra (hydra/launcher=slurm); see launcher.py."""
