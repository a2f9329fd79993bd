"""Hydra's composition with dlrun's errors: the command line is parsed by
Hydra's own parser and composed by Hydra's own compose API, and whatever Hydra
rejects becomes one line with a did-you-mean.

It runs before the `dlrun` command hands over to Hydra and inside `dlrun.run()`,
so a bad command line fails in well under a second, before torch is imported.
"""

import difflib
import re
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf, ValidationError

from dlrun.config import schema
from dlrun.config import sources as config
from dlrun.errors import ConfigError, DlrunError, did_you_mean, unknown_choice

schema.register()  # before Hydra composes anything: conf/config.yaml's first default

# Keys that moved: where they are now.
MOVED = {"regularization.class_balanced_sampler": "trainer.sampling (oversample or undersample)"}


def command_line(argv):
    """Hydra's own parse of a `dlrun` command line (flags and overrides in any order)."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    # Overrides after a flag come back as extras (argparse fills `overrides` once).
    args, extras = parser.parse_known_args(argv)
    unknown = [e for e in extras if e.startswith("-")]
    if unknown:
        raise ConfigError(_not_a_flag(unknown[0], argv))
    args.overrides = [*args.overrides, *extras]
    return args


def _not_a_flag(flag, argv):
    """`--epochs 5`: dlrun's settings are overrides; the key the flag's name is closest to, with the
    value that followed it."""
    name, _, value = flag.lstrip("-").replace("-", "_").partition("=")
    after = argv[argv.index(flag) + 1:] if flag in argv else []
    value = value or (after[0] if after and "=" not in after[0] and not after[0].startswith("-") else "<value>")
    keys = _base_keys([], None)
    leaves = {}
    for key in keys:
        leaves.setdefault(key.rpartition(".")[2], key)
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.6) or [k for k in leaves if name in k][:1]
    hint = f" Did you mean {leaves[close[0]]}={value}?" if close else ""
    return f"{flag} is not an option of dlrun: settings are key=value overrides.{hint} (dlrun --help lists the keys.)"


def check_words(overrides):
    """A word without '=' is not an override (Hydra would say only that it cannot parse it): `model
    cnn` is model=cnn, and a value with a space (`dataset.root=my dir`) needs quotes."""
    for i, word in enumerate(overrides):
        if word.startswith("~"):  # ~key deletes a key: not one the schema declares, which every run reads
            key = word[1:].split("=")[0]
            if schema.spec(key) is not None or key in _groups():
                raise ConfigError(f"{word} deletes {key}, which every run reads: give it a value instead "
                                  f"({key}=...; dlrun --help says what it takes).")
            continue
        if "=" in word:
            continue
        before, after = (overrides[i - 1] if i else None), (overrides[i + 1] if i + 1 < len(overrides) else None)
        if after is not None and "=" not in after:
            raise ConfigError(f"'{word} {after}' is not an override: write {word}={after} (key=value, no spaces).")
        if before is not None and "=" in before and not _is_key(word):
            raise ConfigError(f"'{word}' is not key=value. If it belongs to the value before it, quote the whole "
                              f"override, spaces included: '{before} {word}' (the shell split it at the space).")
        raise ConfigError(f"'{word}' is not key=value: write {word}=<value>.")


def _is_key(word):
    """Whether `word` names a key or group of dlrun's config (as opposed to a piece of a value)."""
    return schema.spec(word) is not None or word.split(".")[0] in _groups() | {k.split(".")[0] for k, _ in schema.leaves()}


def compose(overrides=(), config_dir=None, multirun=False):
    """The config `dlrun <overrides>` composes, checked for unknown groups, options and keys.

    `config_dir` is a user's --config-dir (searched before the shipped configs).
    With `multirun`, every option of a swept group is composed once."""
    overrides = list(overrides)
    check_words(overrides)
    _check_keys_given(overrides)
    probes = _probes(overrides, config_dir) if multirun else [overrides]
    cfg = None
    for probe in probes:
        composed = _compose_one(probe, config_dir)
        cfg = cfg or composed
    return cfg


def _check_keys_given(overrides):
    """`=0.1` (a key lost in the shell, or a stray space) names no key; Hydra would fail on its value's type."""
    for override in overrides:
        if override.startswith("="):
            raise ConfigError(f"'{override}' has no key before '=': write key=value, e.g. optimizer.lr{override}.")


def _compose_one(overrides, config_dir):
    try:
        cfg = _hydra(overrides, config_dir)
    except HydraException as exc:
        raise ConfigError(_translate(exc, overrides, config_dir)) from None
    _check_added_keys(cfg, overrides, config_dir)
    return cfg


def _hydra(overrides, config_dir):
    searchpath = [f"file://{Path(config_dir).resolve()}"] if config_dir else []
    extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    with initialize_config_dir(config_dir=str(config.conf_dir()), version_base="1.3", job_name="dlrun"):
        cfg = hydra_compose(config_name="config", overrides=overrides + extra, return_hydra_config=False)
    return cfg


def _probes(overrides, config_dir=None):
    """Single-run command lines that together cover a sweep: each swept value of a
    group once (so that every option is checked), each other sweep at its first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    base, groups = [], []
    for o in parsed:
        values = _sweep_values(o)
        if values is None:
            base.append(o.input_line)
            continue
        if not values:
            continue  # a continuous range for a sweeper: composed at its config's own value
        base.append(f"{o.get_key_element()}={values[0]}")
        group = o.key_or_group.lstrip("+~")
        if "/" in group or group in _groups(config_dir):  # a value of a plain key (seed) needs no probe of its own
            groups.append((len(base) - 1, o.get_key_element(), values[1:]))
    probes = [base]
    for index, key, rest in groups:
        probes += [base[:index] + [f"{key}={v}"] + base[index + 1:] for v in rest]
    return probes


def _sweep_values(override):
    """The values of a sweep override as strings ([] when they cannot be listed), or None."""
    if not override.is_sweep_override():
        return None
    try:
        return list(override.sweep_string_iterator())
    except (HydraException, ValueError):
        return []


def _translate(exc, overrides, config_dir):
    """One line for Hydra's multi-line composition errors."""
    message = str(exc)
    if isinstance(exc.__cause__, ValidationError):
        return _wrong_type(exc.__cause__, overrides)
    if isinstance(exc, MissingConfigException) and exc.options:
        found = re.search(r"Could not find '([^']+)/([^'/]*)'", message)
        if found:
            return unknown_choice(found.group(1).replace("/", "."), found.group(2), exc.options)
    found = re.search(r"Could not (?:override|append to|delete from) '([^']+)'", message)
    if found:
        key = found.group(1)
        base = _base_keys([o for o in overrides if config.key_of(o) != key], config_dir)
        return unknown_key(key, base, _workable(key, overrides, config_dir))
    found = re.search(r"Ambiguous value for argument '([^']+)'", message)
    if found:
        return (f"{found.group(1)} gives several values: add -m to run one job per value, "
                f"write [a,b] for a list, or quote it ('a,b') for a string.")
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    if isinstance(exc, OverrideParseException):
        bad = next((o for o in overrides if not _parses(o)), " ".join(overrides))
        if "=" in bad and "{" in bad:  # a brace pattern (shards): Hydra reads braces as a dictionary
            key, value = bad.split("=", 1)
            return f"cannot parse {bad}: a value with braces must be quoted for Hydra: \"{key}='{value}'\"."
        return f"cannot parse {bad}: {first} (see Hydra's override grammar)."
    return first


def _wrong_type(error, overrides):
    """`key=value: expected <the schema's type>`, for a value OmegaConf would not take."""
    key = error.full_key
    given = config.value_of(overrides, key)
    field = schema.spec(key)
    expected = schema.type_text(field) if field is not None else "another type"
    if given is None:  # from a config file, not the command line
        return f"{key}={getattr(error, 'value', '?')!r} (in a config file): expected {expected}."
    hint = f" (write {key}=[{given}])" if expected.startswith("a list") and not given.startswith("[") else ""
    return f"{key}={given}: expected {expected}{hint}."


def _parses(override):
    try:
        OverridesParser.create().parse_overrides([override])
    except OverrideParseException:
        return False
    return True


def _base_keys(overrides, config_dir):
    """Every dotted key of the config composed from `overrides` (empty if that fails too)."""
    try:
        cfg = _hydra(overrides, config_dir)
    except HydraException:
        return []
    return [key for key, _ in config.flat_items(OmegaConf.to_container(cfg, resolve=False))]


def unknown_key(key, known, workable=None):
    """`key` is not in the config: say where it is not, and what is there. A key outside the groups
    is matched against the top-level keys and groups; `workable(name)` gives the override that
    would stand in its place if that one composes and validates (a suggestion never fails)."""
    if key in MOVED:
        return f"{key} is now {MOVED[key]}."
    parent, _, leaf = key.rpartition(".")
    siblings = sorted(k for k in known if k.rpartition(".")[0] == parent)
    if parent and siblings:
        names = [s.rpartition(".")[2] for s in siblings]
        return f"{key} is not a key of {parent}.{did_you_mean(leaf, names, f'{parent}.')} Its keys: {', '.join(names)}."
    top = sorted({k.split(".")[0] for k in known} | _groups())
    head, _, rest = key.partition(".")
    if head in top:  # a deeper key of a known group: the nearest dotted key
        return f"{key} is not a config key.{did_you_mean(key, known)}"
    close = difflib.get_close_matches(head.lower(), top, n=3, cutoff=0.6)
    fixed = next((o for o in (workable(".".join(filter(None, (name, rest)))) if workable else None for name in close)
                  if o), None)
    hint = f" Did you mean '{fixed}'?" if fixed else ""
    return f"{key} is not a config key.{hint} The top-level keys and groups: {', '.join(top)}."


def _groups(config_dir=None):
    """The config groups: the shipped ones and those of a user's --config-dir."""
    folders = [config.conf_dir(), *([Path(config_dir)] if config_dir and Path(config_dir).is_dir() else [])]
    return {p.name for folder in folders for p in folder.iterdir() if p.is_dir() and p.name != "hydra"}


def _workable(bad_key, overrides, config_dir):
    """name -> the user's override of `bad_key` rewritten for `name`, if it composes and passes
    validation, else None."""
    from dlrun.config import validate

    def attempt(name):
        rewritten = [_renamed(o, bad_key, name) for o in overrides]
        try:
            validate.check_config(_hydra(rewritten, config_dir))
        except (HydraException, DlrunError, ValueError):
            return None
        return next(o for o, before in zip(rewritten, overrides) if o != before)

    return attempt


def _renamed(override, key, name):
    """`override` with its key `key` replaced by `name` (its +/~ prefix dropped)."""
    return f"{name}={override.split('=', 1)[1]}" if config.key_of(override) == key and "=" in override else override


def _check_added_keys(cfg, overrides, config_dir):
    """`+key=value` may add arguments for users' own components only, not inside dlrun's own groups."""
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.type is not OverrideType.ADD or o.key_or_group.startswith("hydra") or "/" in o.key_or_group:
            continue
        key = o.key_or_group
        group = key.split(".")[0]
        if group in schema.REGISTRY_GROUPS or _is_group(key, config_dir):
            continue  # checked against the builder's signature (or free for a _target_)
        if group in schema.FIXED_GROUPS or "." not in key:
            known = _base_keys([x for x in overrides if config.key_of(x) != key], config_dir)
            raise ConfigError(unknown_key(key, known, _workable(key, overrides, config_dir)))


def _is_group(name, config_dir):
    """A config group (`+experiment=...` selects an option, it adds no key)."""
    return any((Path(root) / name).is_dir() for root in (config.conf_dir(), config_dir) if root)
