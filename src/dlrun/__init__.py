"""dlrun: a config-driven command-line runner for PyTorch experiments.

Importing the package is cheap (no torch); the notebook API lives in
:mod:`dlrun.api` and is re-exported lazily from here.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "run", "compose", "list_datasets", "list_models", "list_optimizers", "list_schedulers",
           "list_losses"]

_API = ("run", "compose", "list_datasets", "list_models", "list_optimizers", "list_schedulers", "list_losses")


def __dir__():
    return sorted({*globals(), *_API})


def __getattr__(name):
    if name in _API:
        from dlrun import api

        return getattr(api, name)
    raise AttributeError(name)
