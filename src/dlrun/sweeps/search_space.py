"""Search spaces for the Optuna sweeper, checked before any trial starts.

Each parameter is a config key with a spec:
    optimizer.lr:       {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    trainer.batch_size: {type: categorical, choices: [32, 64, 128]}
    model.hidden:       {type: int, low: 32, high: 256, step: 32}
"""

from dataclasses import dataclass

from omegaconf import OmegaConf

from dlrun.errors import ConfigError, unknown_choice

KINDS = ("float", "int", "categorical")


@dataclass
class Param:
    key: str
    kind: str
    low: float = None
    high: float = None
    log: bool = False
    step: float = None
    choices: tuple = ()

    @property
    def optuna_choices(self):
        """The choices as Optuna stores them (None, bool, int, float, str): a list (hidden sizes) as
        its override text."""
        return [c if isinstance(c, (type(None), bool, int, float, str)) else _format(c) for c in self.choices]

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, self.optuna_choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def override(self, trial):
        value = self.suggest(trial)
        return f"{self.key}={_format(value)}"


def _format(value):
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def _flatten(params, prefix=""):
    """Dotted keys to specs: `optimizer.lr: {...}` in YAML and `+hydra.sweeper.params.optimizer.lr=...`
    on the command line (which nests) mean the same."""
    for key, spec in params.items():
        if isinstance(spec, dict) and "type" not in spec and spec and all(isinstance(v, dict) for v in spec.values()):
            yield from _flatten(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def parse_space(params, config):
    """The parameters of `params` as Param objects; any problem is a ConfigError naming it."""
    space = []
    for key, spec in _flatten(params):
        where = f"hydra.sweeper.params.{key}"
        if OmegaConf.select(config, key, default="__absent__") == "__absent__":
            raise ConfigError(f"{where}: '{key}' is not a key of the config, so it cannot be searched.")
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping such as {{type: float, low: 0.001, high: 0.1}}.")
        kind = spec.get("type")
        if kind not in KINDS:
            raise ConfigError(unknown_choice(f"{where}.type", kind, KINDS))
        if kind == "categorical":
            choices = tuple(spec.get("choices") or ())
            if not choices:
                raise ConfigError(f"{where}.choices is empty: list at least one value.")
            space.append(Param(key, kind, choices=choices))
            continue
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"{where} needs numeric low and high (got low={low}, high={high}).")
        if low >= high:
            raise ConfigError(f"{where}: low={low} must be below high={high}.")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0 (got {low}).")
        space.append(Param(key, kind, low, high, bool(spec.get("log", False)), spec.get("step")))
    return space
