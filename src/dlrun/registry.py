"""One small Registry class shared by every component kind.

A config node either names a registered builder (``name: cnn`` plus its
arguments) or, for users' own code, a ``_target_`` import path. Builders take
plain arguments so they are callable from a notebook too.
"""

import fnmatch
import importlib
import inspect

from dlrun.errors import ConfigError, did_you_mean, unknown_choice


class Registry:
    """Builders of one component kind, by name.

    `builtins` are the modules that register the built-in builders; they are
    imported on first use, so the registry is complete right after import
    without paying for what a run does not use. `context` names what the run
    passes to builders (input shape, optimizer...); `handled` names the keys
    of the group that dlrun reads itself and never passes to a builder."""

    def __init__(self, kind, builtins=(), context=(), handled=()):
        self.kind = kind
        self.context = tuple(context)
        self.handled = tuple(handled)
        self._builders = {}
        self._builtins = list(builtins)

    def register(self, name=None):
        """Decorator: ``@MODELS.register`` (named after the function) or ``@MODELS.register("cnn")``."""
        if callable(name):
            return self.register()(name)

        def add(builder):
            key = name or builder.__name__
            if key in self._builders:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._builders[key] = builder
            return builder

        return add

    def _load_builtins(self):
        while self._builtins:
            importlib.import_module(self._builtins.pop(0))

    def names(self, pattern="*"):
        """Registered names matching the shell-style `pattern` (``"*res*"``), sorted."""
        self._load_builtins()
        return sorted(n for n in self._builders if fnmatch.fnmatchcase(n, pattern))

    def get(self, name):
        self._load_builtins()
        if name not in self._builders:
            raise ConfigError(unknown_choice(f"{self.kind}.name", name, self.names()))
        return self._builders[name]

    def resolve(self, spec):
        """The builder and its arguments for a config node (a mapping)."""
        args = {k: v for k, v in dict(spec).items() if k not in ("name", "_target_", *self.handled)}
        if spec.get("_target_"):
            return import_target(spec["_target_"], self.kind), args
        return self.get(spec.get("name")), args

    def check(self, spec):
        """Fail now, before any work, on an unknown name or argument in `spec`."""
        builder, args = self.resolve(spec)
        _check_arguments(builder, args, self.context, self.kind, _label(spec))

    def build(self, spec, **context):
        """Call the builder named by `spec` with its arguments plus `context`.

        `context` holds what the run knows (input shape, number of outputs...);
        only the parameters a builder declares are passed to it.
        """
        builder, args = self.resolve(spec)
        return call_with_known(builder, args, context, self.kind, _label(spec))


def _label(spec):
    """How the user named a component: its registered name or its _target_."""
    return spec.get("_target_") or spec.get("name")


def targets(node, place=""):
    """`place=path` of every `_target_` import path in a config node, at any depth (lists too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            inner = f"{place}.{key}" if place else str(key)
            yield from [f"{inner}={value}"] if key == "_target_" else targets(value, inner)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from targets(item, f"{place}[{i}]")


def import_target(path, kind):
    module_name, _, attr = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{kind}._target_={path} cannot be imported: {exc}") from None


def call_with_known(builder, args, context, kind, label=None):
    """Call `builder(**args, **context)`, checking argument names first.

    Unknown config arguments are an error (they are typos); context entries the
    builder does not declare are simply not passed.
    """
    params = _check_arguments(builder, args, context, kind, label)
    if params is None:
        return builder(**args)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in context.items() if k in params or takes_any}
    return builder(**args, **extra)


def _check_arguments(builder, args, provided, kind, label=None):
    """Every config argument must be a parameter of `builder`; returns its parameters
    (None for a callable whose signature Python cannot read, e.g. some builtins)."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return params
    unknown = [k for k in args if k not in params]
    if unknown:
        allowed = [k for k in params if k not in provided]
        raise ConfigError(
            f"{kind}.{unknown[0]} is not an argument of {kind} '{label or getattr(builder, '__name__', builder)}'."
            f"{did_you_mean(unknown[0], allowed)} Its arguments: {', '.join(allowed) or 'none'}."
        )
    for name, value in args.items():
        _check_type(f"{kind}.{name}", value, params[name].default)
    return params


# A builder's default says its argument's type: a flag, a number or a name (an integer default
# may stand for a list too, as kernel sizes do, so integers are left to the builder).
EXPECTED = ((bool, (bool,), "true or false"), (float, (int, float), "a number"), (str, (str,), "a string"))


def _check_type(key, value, default):
    for kind, accepted, words in EXPECTED:
        if type(default) is kind and value is not None:
            if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"{key}={value}: expected {words}.")
            return
