"""The Python API: the same runs as the `dlrun` command, from a notebook or script.

    import dlrun
    summary = dlrun.run(["model=cnn", "trainer.max_epochs=5"])
    cfg = dlrun.compose(["model=cnn"])        # the composed config, without running

Building blocks with plain arguments live in their modules:
`dlrun.data.DATASETS.build({"name": "digits"})`, `dlrun.models.build(...)`,
`dlrun.train.trainer.Loop`, `dlrun.results.metrics`, and every plot in `dlrun.results.plots`.
"""

import logging
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.config import composition
from dlrun.config import sources as config
from dlrun.layout import RunDir
from dlrun.tasks import job


def compose(overrides=(), config_dir=None):
    """The config the `dlrun` command would compose from `overrides` (`config_dir`: a
    directory of your own configs, searched before the shipped ones, like --config-dir).
    Unknown groups, options and keys raise :class:`dlrun.errors.ConfigError`."""
    return composition.compose(overrides, config_dir)


def _choices(group, registry, pattern, config_dir):
    """What `group=` takes (its YAML options: the shipped ones and those in `config_dir`) and what
    `group.name=` takes (the registered builders, your plugins' included), matching `pattern`."""
    import fnmatch

    from dlrun.config import listing

    options = listing.options(group, [config_dir] if config_dir else [])
    return sorted({n for n in options if fnmatch.fnmatchcase(n, pattern)} | set(registry.names(pattern)))


def list_datasets(pattern="*", config_dir=None):
    """The datasets you can name (`dataset=` options and registered builders) matching a shell-style
    pattern: ``dlrun.list_datasets("synthetic*")``."""
    from dlrun.data import DATASETS

    return _choices("dataset", DATASETS, pattern, config_dir)


def list_models(pattern="*", config_dir=None):
    """The models you can name matching a shell-style pattern: ``dlrun.list_models("*res*")``."""
    from dlrun.models import MODELS

    return _choices("model", MODELS, pattern, config_dir)


def list_optimizers(pattern="*", config_dir=None):
    from dlrun.train.optimizer import OPTIMIZERS

    return _choices("optimizer", OPTIMIZERS, pattern, config_dir)


def list_schedulers(pattern="*", config_dir=None):
    from dlrun.train.scheduler import SCHEDULERS

    return _choices("scheduler", SCHEDULERS, pattern, config_dir)


def list_losses(pattern="*", config_dir=None):
    from dlrun.train.loss import LOSSES

    return _choices("loss", LOSSES, pattern, config_dir)


def run(overrides=(), run_dir=None, config_dir=None):
    """Train (or evaluate) like `dlrun <overrides>`; returns the summary dict.

    Errors are raised as :class:`dlrun.errors.DlrunError` with the same
    messages the command prints.
    """
    overrides, planned, config_dir = config.plan_run(list(overrides), config_dir=config_dir)
    cfg = compose(overrides, config_dir)
    run_dir = Path(run_dir) if run_dir else planned or config.new_run_dir()
    config.check_writable(run_dir, "run_dir")
    with job.record_kept_unless_started(run_dir):
        return _run_in(cfg, overrides, run_dir, config_dir)


def _run_in(cfg, overrides, run_dir, config_dir=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(run_dir)
    run.hydra.mkdir(exist_ok=True)
    OmegaConf.save(cfg, run.hydra / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), run.overrides)
    handler = logging.FileHandler(run.log)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logger = logging.getLogger("dlrun")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return job.run(cfg, run_dir, config_dir=config_dir)
    finally:
        logger.removeHandler(handler)
        handler.close()
