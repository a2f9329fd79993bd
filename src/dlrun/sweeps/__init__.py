"""Sweeps: the leaderboard and its statistics and pages, search spaces, Optuna pruning, MLflow
tracking and `dlrun compare`."""
