"""cache=true: work never done twice. A training whose resolved config, code (the repository's
commit and uncommitted changes, dlrun's own), installed packages, device and data files are all
those of a run that completed under the outputs root is not run again: that run's files are
linked into the new run directory (hard links: no copy, and safe from the old run's deletion),
and the new record says where they came from.

The key is made from the run's provenance (provenance.gather) for every training, so that any
earlier run can be found, cache=true or not.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.layout import RunDir

# Keys that name, label or show a run without changing what it computes.
PRESENTATION = ("name", "tags", "cache", "show_config")
PRESENTATION_TRAINER = ("progress",)


def key(cfg, device, code_patch, provenance_fields):
    """The sha256 of what a training's results depend on."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for name in PRESENTATION:
        config.pop(name, None)
    for name in PRESENTATION_TRAINER:
        config.get("trainer", {}).pop(name, None)
    code, checkout = provenance_fields.get("code") or {}, provenance_fields.get("dlrun_checkout") or {}
    parts = {"config": config, "device": str(device).split(":")[0],
             "code": [code.get("commit"), _digest(code_patch)],
             "dlrun": [checkout.get("commit"), checkout.get("diff")],
             "environment": provenance_fields["environment"]["hash"], "data": data_fingerprint(cfg.dataset)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def data_fingerprint(dataset):
    """(path, size, modification time) of every file a dataset config names as its source: a
    file, a folder (every file under it), or a brace or glob pattern of shards. What dlrun derives
    from them (`cache_dir`, the decoded image folders) is left out: it changes as runs write it."""
    from dlrun.data.base import file_stamps
    from dlrun.data.decoded import FOLDER

    files = []
    for value in _strings({k: v for k, v in OmegaConf.to_container(dataset, resolve=True).items() if k != "cache_dir"}):
        for name in _paths(value):
            path = Path(name).expanduser()
            files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                          and FOLDER not in p.relative_to(path).parts) \
                if path.is_dir() else []
    return hashlib.sha256(json.dumps(file_stamps(files)).encode()).hexdigest()


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _paths(value):
    """The files a config value names, when it names any (a word, a name or a choice does not)."""
    from dlrun.data.base import expanded

    return expanded(value) if "/" in value or os.path.exists(value) else []


def completed_like(cache_key, root, this_run):
    """The newest completed run under `root` (not `this_run`) with this key, or None."""
    from dlrun.results import runs

    found = [r for r in runs.find(root) if r.get("cache_key") == cache_key and r.get("status") == "completed"
             and Path(r["path"]).resolve() != Path(this_run).resolve()]
    return max(found, key=lambda r: r.get("started_at") or "", default=None)


# What the new record keeps of its own: where it is, what it was called and asked, when.
OWN = ("run_dir", "name", "tags", "overrides", "started_at")


def link(earlier, run_dir, own):
    """The files of the run `earlier` (its record) linked into `run_dir`, beside what Hydra
    wrote there for this run (.hydra/, run.log); returns its record with this run's `own`
    fields (OWN), saying where the rest came from."""
    source, target = Path(earlier["path"]), RunDir(run_dir)
    for item in source.iterdir():
        if item.name in (".hydra", target.log.name, target.summary.name) or (target.root / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, target.root / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, target.root / item.name)
    summary = {k: v for k, v in earlier.items() if k != "path"}
    summary.update({k: own[k] for k in OWN if k in own}, cached_from=str(source))
    return summary


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)
