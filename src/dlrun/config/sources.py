"""Where the configs are, where runs go, and what a resumed run is composed from.

Nothing here imports torch: `dlrun --help` and `dlrun --cfg job` stay fast.
"""

import contextlib
import os
import shlex
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.errors import ConfigError, DlrunError, os_reason
from dlrun.layout import RunDir, run_of_checkpoint

PACKAGE = Path(__file__).resolve().parent.parent  # the dlrun package (this module is in dlrun/config)


def conf_dir():
    """The shipped configs: inside the installed package, or the repository's conf/."""
    shipped = PACKAGE / "conf"
    return shipped if (shipped / "config.yaml").is_file() else PACKAGE.parent.parent / "conf"


def outputs_root():
    return Path(os.environ.get("DLRUN_OUTPUTS") or "outputs")  # set but empty: the default too


def reserve_dir(base):
    """Create and return `base`, or `base_1`, `base_2`... if it exists.

    mkdir is atomic, so two runs started in the same second never share a directory.
    """
    base = Path(base)
    try:
        for n in range(10_000):
            candidate = base if n == 0 else base.with_name(f"{base.name}_{n}")
            try:
                candidate.mkdir(parents=True)  # the day's folder too (a failed run may just have removed it)
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise DlrunError(f"cannot create the output directory {base}: {exc.strerror}. Set DLRUN_OUTPUTS or "
                         f"hydra.run.dir to a writable directory.") from None
    raise DlrunError(f"too many runs in {base.parent} within one second.")


def check_writable(folder, key):
    """Create `folder` and write a block in it, or one line now (not Hydra's traceback later):
    a path under /proc, a read-only place or a full disk is refused before anything is made."""
    folder = Path(folder).expanduser().absolute()
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        for made in missing:  # innermost first: what this check created goes again
            with contextlib.suppress(OSError):
                made.rmdir()
        raise DlrunError(f"{key}={folder}: cannot write there ({os_reason(exc)}). Choose a "
                         f"writable directory with enough space (or set DLRUN_OUTPUTS).") from None


def new_run_dir(multirun=False):
    now = datetime.now()
    parent = outputs_root() / ("multirun" if multirun else "")
    return reserve_dir(parent / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S"))


def run_dir_of(ckpt_path):
    """The run directory a checkpoint belongs to (the path itself for a directory)."""
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        return path
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file or directory.")
    return run_of_checkpoint(path)


def run_overrides(run_dir):
    """The command-line overrides that composed the run in `run_dir` (Hydra's .hydra/overrides.yaml)."""
    file = RunDir(run_dir).overrides
    return [str(o) for o in OmegaConf.load(file)] if file.is_file() else []


def stored_run(ckpt_path):
    """(overrides, sources) of the run of `ckpt_path`, to compose it again: the overrides that
    composed it without the run-specific ones, and where its own code came from (see
    code_sources). Both from the checkpoint itself, so that a checkpoint moved elsewhere keeps
    its config, else the overrides from its run directory's .hydra/overrides.yaml."""
    from dlrun.results import checkpoint

    path = Path(ckpt_path).expanduser()
    try:
        record = checkpoint.record_of(path)
    except DlrunError:  # no checkpoint file there (a cross-validation run's parent directory)
        record = {}
    stored = record.get("overrides")
    skip = ("ckpt_path=", "task=", "hydra.", "+hydra.")
    overrides = [o for o in (stored if stored is not None else run_overrides(run_dir_of(path))) if not o.startswith(skip)]
    return overrides, record.get("sources") or {}


def code_sources(config_dir, plugins):
    """Where a run's own code lives, recorded in its checkpoints: the user's config directory
    (--config-dir) and the directories its plugin modules were imported from."""
    import importlib.util

    paths = []
    for name in plugins or []:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            origin = Path(spec.origin).resolve()
            paths.append(str(origin.parents[name.count(".") + (origin.name == "__init__.py")]))
    return {"config_dir": str(Path(config_dir).resolve()) if config_dir else None,
            "python_paths": list(dict.fromkeys(paths))}


def names_code(override):
    """Whether an override can make dlrun import or call code: a `_target_`, a plugin
    module, or another config search path."""
    return "_target_" in override or key_of(override) in ("plugins", "hydra.searchpath")


def _own_code(ckpt, stored, sources, given, config_dir):
    """A stored run is data: the code it names (a `_target_` or plugins in its overrides, its
    config directory) is reused only with trust_run_code=true, which also puts the directories
    its plugins came from on sys.path; otherwise one line says exactly what to pass.
    Returns the config directory to compose with."""
    mine = {key_of(o) for o in given}
    code = [o for o in stored if names_code(o) and key_of(o) not in mine]
    missing_dir = sources.get("config_dir") if config_dir is None else None
    if not code and not missing_dir:
        return config_dir
    paths = [p for p in sources.get("python_paths") or [] if p not in sys.path]
    if str(value_of(given, "trust_run_code")).lower() == "true":
        if missing_dir and not Path(missing_dir).is_dir():
            raise DlrunError(f"ckpt_path={ckpt} was composed with --config-dir {missing_dir}, which is gone; give "
                             f"--config-dir with a copy of those configs.")
        sys.path[:0] = paths
        return config_dir or missing_dir
    named = [f"'{o}'" for o in code] + ([f"--config-dir {missing_dir}"] if missing_dir else [])
    command = [*([f"PYTHONPATH={shlex.quote(os.pathsep.join(paths))}"] if paths else []), "dlrun",
               *(["--config-dir", shlex.quote(missing_dir)] if missing_dir else []), *map(shlex.quote, [*code, *given])]
    raise DlrunError(
        f"ckpt_path={ckpt} was composed with {' and '.join(named)}, which makes dlrun import or run code. A stored run "
        f"is read as data: give {'it' if len(named) == 1 else 'them'} yourself ({' '.join(command)}), or add "
        f"trust_run_code=true if you trust where this run came from.")


def quote(value):
    """A value safe to put on the right of an override's '='."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def as_written(value):
    """A value as the command line writes it: null, true, [a, b]."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(as_written(v) for v in value)}]"
    return str(value)


def flat_items(data, prefix=""):
    """(dotted key, value) for every leaf of a nested mapping; an empty mapping is a leaf."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def key_of(override):
    """The key (or group) an override sets, without its +/~ prefix and @package."""
    return str(override).lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def value_of(overrides, key):
    """The last value given to `key` in a list of overrides, or None."""
    for override in reversed(overrides):
        if "=" in str(override) and key_of(override) == key:
            return str(override).split("=", 1)[1].strip("'\"")
    return None


def plan_run(overrides, multirun=False, config_dir=None):
    """(overrides, run directory or None, config directory) for a new run.

    With ckpt_path=, the overrides of the run that wrote the checkpoint come
    first (the user's still win) and training resumes in that run's directory;
    task=eval and sweeps get a fresh directory. None: the caller reserves one.
    The config directory is the user's (--config-dir), or with trust_run_code=true
    the stored run's own.
    """
    ckpt = value_of(overrides, "ckpt_path")
    if not ckpt or ckpt == "null":
        return list(overrides), None, config_dir
    source = run_dir_of(ckpt)
    original, sources = stored_run(ckpt)
    config_dir = _own_code(ckpt, original, sources, overrides, config_dir)
    if value_of(overrides, "task") in (None, "train"):
        for group in ("model", "dataset", "optimizer"):
            before, after = value_of(original, group), value_of(overrides, group)
            if before is not None and after is not None and before != after:
                raise DlrunError(f"ckpt_path={ckpt} was trained with {group}={before}, and this run asks for "
                                 f"{group}={after}. A resume continues the same model, data and optimizer state: "
                                 f"drop that override, or start a new run.")
    overrides = original + list(overrides)
    is_run = RunDir(source).summary.is_file()  # a checkpoint from elsewhere starts a fresh run directory
    in_place = is_run and value_of(overrides, "task") in (None, "train") and not multirun
    return overrides, source if in_place else None, config_dir
