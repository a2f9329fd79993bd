"""Training: the loop, the update step, the fit policy, weight averaging, data-parallel training,
and the builders of optimizers, schedules, losses, regularization and devices."""
