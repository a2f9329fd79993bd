"""Reusing trained weights: `init_from` loads the tensors that fit into a new model, and
`Freezing` keeps parameters chosen by name patterns fixed until an optional epoch.

Both work on parameter names, so they apply to every model, built-in or a user's."""

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from dlrun.errors import ConfigError, DlrunError
from dlrun.results import checkpoint


def _source_weights(path, unverified):
    """(the model tensors, the model's name or None) of a dlrun checkpoint, or of a plain
    state_dict file, loaded safely."""
    try:
        state = checkpoint.load(path, unverified=unverified)
        return state["model"], (state.get("model_spec") or {}).get("name")
    except DlrunError as exc:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise exc from None
        if isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
            return state, None
        raise


def init_from(model, path, exclude=(), unverified=False, model_name=None):
    """Copy every tensor of the source whose name and shape match into `model` (registered as
    `model_name`), except those whose names match an `exclude` pattern (the rest keep their fresh
    initialisation: a new head when the number of classes differs, or when `head.*` is excluded).
    Returns what happened, for the summary and the terminal; refuses a source that fits nothing."""
    path = checkpoint.resolve(path, "init_from", checkpoint.WEIGHTS_FIRST)
    source, source_name = _source_weights(path, unverified)
    excluded = [k for k in source if any(fnmatch.fnmatchcase(k, p) for p in exclude)]
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(k, pattern) for k in source):
            raise ConfigError(f"init_from_exclude: the pattern '{pattern}' matches no tensor of {path}. Its tensors: "
                              f"{_name_summary(list(source))}.")
    source = {k: v for k, v in source.items() if k not in excluded}
    target = model.state_dict()
    loaded = [k for k, v in source.items() if k in target and tuple(target[k].shape) == tuple(v.shape)]
    reshaped = [k for k, v in source.items() if k in target and k not in loaded]
    if not loaded:
        raise ConfigError(f"init_from={path}: none of its {len(source)} tensors matches a parameter of this model "
                          f"by name and shape (this model's first: {', '.join(list(target)[:3])}). Start from a run "
                          f"of the same model architecture.")
    model.load_state_dict({k: source[k] for k in loaded}, strict=False)
    return {"path": str(path), "loaded": len(loaded), "of": len(target),
            "fresh": [k for k in target if k not in loaded], "shape_differs": reshaped, "excluded": excluded,
            "warning": _other_architecture(loaded, source, target, source_name, model_name)}


def _other_architecture(loaded, source, target, source_name, model_name):
    """A warning when most of both models' tensors do not fit: the few that do (a head of the same
    size) would sit on features they were never trained with."""
    if 2 * len(loaded) > min(len(source), len(target)):
        return None
    models = (f" (it is a '{source_name}' model; this run's is '{model_name}')"
              if source_name and model_name and source_name != model_name else "")
    return (f"init_from: only {len(loaded)} of the source's {len(source)} tensors fit this model ({', '.join(loaded[:3])}"
            f"{', ...' if len(loaded) > 3 else ''}): the source is another architecture{models}, so they sit on "
            f"features they were not trained with; start from a run of the same model, or train from scratch")


def describe(report):
    fresh = report["fresh"]
    shown = ", ".join(fresh[:4]) + (f" and {len(fresh) - 4} more" if len(fresh) > 4 else "")
    return (f"init_from: {report['loaded']} of {report['of']} tensors loaded from {report['path']}"
            + (f"; freshly initialised: {shown}" if fresh else "; every tensor matched") + ".")


@dataclass
class Freezing:
    """Parameters whose names match `patterns` get no gradient (and their BatchNorm layers keep
    their running statistics) before epoch `unfreeze_epoch` (counted from 1; None: never)."""

    patterns: tuple = ()
    unfreeze_epoch: int = None

    def check(self, model):
        """Every pattern must name at least one parameter (a typo would freeze nothing silently)."""
        names = [n for n, _ in model.named_parameters()]
        for pattern in self.patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(f"model.freeze: the pattern '{pattern}' matches no parameter of this model. Its "
                                  f"parameters: {_name_summary(names)}.")

    def frozen(self, model, epoch):
        """The names of the parameters frozen during epoch `epoch` (counted from 0)."""
        if not self.patterns or (self.unfreeze_epoch is not None and epoch + 1 >= self.unfreeze_epoch):
            return []
        return [n for n, _ in model.named_parameters() if any(fnmatch.fnmatchcase(n, p) for p in self.patterns)]

    def apply(self, model, epoch):
        """Set requires_grad for epoch `epoch` and put BatchNorm layers whose parameters are all
        frozen in eval mode, so that their statistics stay those of the weights they came with.
        Call after model.train()."""
        if not self.patterns:
            return
        frozen = set(self.frozen(model, epoch))
        for name, param in model.named_parameters():
            if any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
                param.requires_grad_(name not in frozen)
        for prefix, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                names = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters()]
                if names and all(n in frozen for n in names):
                    module.eval()


def _name_summary(names):
    """Parameter names grouped by their first component, e.g. 'features.* (6), head.* (2)'."""
    groups = {}
    for name in names:
        groups.setdefault(name.split(".")[0], 0)
        groups[name.split(".")[0]] += 1
    return ", ".join(f"{g}.* ({n})" for g, n in groups.items())
