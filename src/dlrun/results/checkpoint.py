"""Checkpoints: plain data only (tensors, numbers, strings, lists, dicts), so the
safe loader (``torch.load(weights_only=True)``) reads them and a file from
elsewhere can never run code. There is no fallback to the unsafe loader.

Each checkpoint carries the SHA-256 of all it holds (config, overrides, model spec,
preprocessing, tensors), checked on load: torch.load verifies none of it, so a
corrupted or edited file would otherwise load and quietly give other numbers. A
file without a checksum is refused unless the user accepts it knowingly
(trust_unverified_ckpt=true). Nothing in a checkpoint names code that is run: a
model is built from its registered name (see flow's predict task). A file of an older
format is verified as its format defines, then upgraded (checkpoint_formats)."""

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch

from dlrun import __version__
from dlrun.errors import ConfigError, DlrunError
from dlrun.layout import RunDir
from dlrun.results import checkpoint_formats as formats
from dlrun.results import record
from dlrun.results.artifacts import atomic_write, remove_stale_temporaries
from dlrun.results.checkpoint_formats import FORMAT

# What every checkpoint dlrun writes holds (Loop.state_dict and build.record): the weights with
# the run's record, which evaluating and predicting need, and the training state a resume needs.
RECORD = ("model", "config", "overrides", "preprocessing", "model_spec")
TRAINING = ("optimizer", "schedule", "update", "fit", "batches", "rng")
# A run directory's weights to use (evaluate, predict, init_from): its best.pt, its chosen
# weights, else its last.pt; a resume continues from last.pt (resolve's default).
WEIGHTS_FIRST = ("best", "last")


def save(path, state):
    write(path, serialize(state))


def serialize(state):
    """The bytes of a checkpoint of `state`, with its format and checksum."""
    state = {"format": FORMAT, **state}
    state["checksum"] = checksum(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def write(path, data):
    atomic_write(path, lambda handle: handle.write(data))


def checksum(state):
    """SHA-256 over every field of `state` but the checksum itself, in a fixed order: each
    tensor by its dtype, shape and bytes, every other value by its type and text, each by its
    place in the state."""
    digest = hashlib.sha256()
    for place, leaf in _leaves(state):
        digest.update(place.encode())
        if torch.is_tensor(leaf):
            tensor = leaf.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(f"{type(leaf).__name__}:{leaf!r}".encode())
    return digest.hexdigest()


def _leaves(node, place=""):
    """(place, value) of every tensor and plain value; a container's place records its kind and size."""
    if isinstance(node, dict):
        keys = sorted((k for k in node if not (place == "" and k == "checksum")), key=str)
        yield f"{place}{{{len(keys)}}}", None
        for key in keys:
            yield from _leaves(node[key], f"{place}/{key!r}")
    elif isinstance(node, (list, tuple)):
        yield f"{place}[{len(node)}]", type(node).__name__
        for i, item in enumerate(node):
            yield from _leaves(item, f"{place}/{i}")
    else:
        yield place, node


def resolve(path, key="ckpt_path", prefer=("last", "best")):
    """A checkpoint file from a path to the file or to a run directory: the first of its
    checkpoints named in `prefer` that exists. A resume prefers last.pt (and falls back to best.pt
    when a kill cut the first write of last.pt: best is written first); using a run's weights
    prefers best.pt. `key` names the setting in the message when there is none."""
    path = Path(path).expanduser()
    if path.is_dir():
        run = RunDir(path)
        found = next((run.checkpoint(name) for name in prefer if run.checkpoint(name).is_file()), None)
        if found is None and (run.summary.is_file() or (path / "run.log").is_file()):
            _no_checkpoint_yet(run, key)
        path = found or run.checkpoint(prefer[0])
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such checkpoint file. Give a .pt file or a run directory "
                         f"that has checkpoints/last.pt.")
    return path


def _no_checkpoint_yet(run, key):
    """A run directory without checkpoints: it stopped before its first was written (or trains
    none). Said so, and the temporary files of writes a kill cut short are removed."""
    for folder in (run.root, run.checkpoints):
        if folder.is_dir():
            remove_stale_temporaries(folder)
    status = record.read(run.summary).get("status") if run.summary.is_file() else None
    said = f" (its summary.json says '{status}')" if status else " (it has no summary.json: it was killed early)"
    raise DlrunError(f"{key}={run.root} is a run directory without checkpoints{said}: it stopped before the first "
                     f"one was written, so there is nothing to continue or evaluate. Start the run again.")


def load(path, map_location="cpu", unverified=False, prefer=("last", "best")):
    """Load a dlrun checkpoint safely, or say exactly why it cannot be used. `unverified`: the
    user accepts a checkpoint without a checksum (trust_unverified_ckpt=true); `prefer`: which of
    a run directory's checkpoints (see resolve)."""
    path = resolve(path, prefer=prefer)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has no directory
        raise DlrunError(f"{path} is truncated or not a PyTorch checkpoint (it is not a complete zip archive).")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DlrunError(
            f"refusing to load {path}: it contains pickled Python objects, which could run code when "
            f"loaded ({_reason(exc)}). dlrun checkpoints hold only tensors and plain data; this file was "
            f"not written by dlrun or has been tampered with, and it is never loaded in unsafe mode."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise DlrunError(f"{path} is truncated or not a PyTorch checkpoint ({_reason(exc)}).") from None
    _check_format(state, path)
    _require(state, RECORD, path, "evaluating and predicting need")  # every format held the record
    _verify(state, path, unverified)
    return formats.upgrade(state)


def _verify(state, path, unverified):
    """The checksum of the file's own format matches; what it leaves unchecked (everything without
    a checksum, the record of a format-1 file) is used only when the user accepts it."""
    if "checksum" not in state:
        if unverified:
            return
        raise DlrunError(f"{path} has no checksum, so a changed byte in it could not be detected (dlrun writes one "
                         f"in every checkpoint). Use another copy, or add trust_unverified_ckpt=true to load it as "
                         f"it is if you know where it came from.")
    partial = state["format"] in formats.TENSORS_ONLY
    if state["checksum"] != (formats.tensor_checksum(state) if partial else checksum(state)):
        raise DlrunError(f"{path} is corrupted or was edited: what it holds does not match the checksum written "
                         f"with it. Use another checkpoint of the run (best.pt or last.pt) or a copy of this one.")
    if partial and not unverified:
        raise DlrunError(f"{path} was written by an older dlrun (checkpoint format {state['format']}), whose checksum "
                         f"covers only the tensors: its weights are intact, but a change to its config or record could "
                         f"not be detected. Add trust_unverified_ckpt=true to use it if you know where it came from; "
                         f"the checkpoints this dlrun writes (format {FORMAT}) are checked whole.")


def require_training_state(state, path):
    """A resume continues the optimizer, schedule, sampling and generators: a checkpoint without
    them is named as incomplete (before any comparison of settings)."""
    _require(state, TRAINING, path, "resuming needs")


def _require(state, keys, path, purpose):
    missing = [key for key in keys if key not in state]
    if missing:
        raise DlrunError(f"{path} is an incomplete dlrun checkpoint: it lacks {', '.join(missing)}, which {purpose} "
                         f"(every checkpoint dlrun writes holds them). It was cut down or written by other code; use "
                         f"the run's checkpoints/last.pt or best.pt.")


def record_of(path):
    """What a checkpoint records of its run's composition: its command-line `overrides` and the
    `sources` of its own code ({} for a file without them). Memory-mapped: reading them does not
    load the tensors."""
    path = resolve(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable files are reported with the full check in load()
        return {}
    return {key: state[key] for key in ("overrides", "sources") if key in state} if isinstance(state, dict) else {}


# What a resume restores from the checkpoint, so a different configured value would be
# recorded but not used: the model, the data, and the optimizer with its hyperparameters
# (the learning rate and weight decay live in the optimizer's restored state), and the seed
# (it drew the split, and the generators continue from their saved state). The data's
# location may change (data moved to another disk or machine).
RESTORED = {"model": None, "dataset": None, "optimizer": None,
            "regularization": ("weight_decay", "decay_norm_and_bias")}
MAY_MOVE = ("root", "download")


def check_same_model_and_data(state, config, path):
    """A resume continues what the checkpoint was trained with: refuse a change, naming it."""
    stored = state.get("config") or {}
    changed = [] if stored.get("seed") == config.get("seed") else [f"seed={stored.get('seed')!r} -> {config.get('seed')!r}"]
    for group, keys in RESTORED.items():
        before, after = stored.get(group) or {}, config.get(group) or {}
        names_first = sorted(set(before) | set(after), key=lambda k: (k not in ("name", "_target_"), str(k)))
        for key in keys or [k for k in names_first if k not in MAY_MOVE]:
            if before.get(key) != after.get(key):
                changed.append(f"{group}.{key}={before.get(key)!r} -> {after.get(key)!r}")
    if changed:
        raise DlrunError(
            f"ckpt_path={path} was trained with other settings than this run asks for ({'; '.join(changed[:3])}). "
            f"A resume continues the same model, data, seed and optimizer state: drop those overrides, or start a new "
            f"run.")


def _check_format(state, path):
    """A dlrun checkpoint of a format this dlrun reads, or one line on what the file is instead."""
    if isinstance(state, dict) and formats.known(state.get("format")):
        return
    if isinstance(state, dict) and "format" in state:
        newer = isinstance(state["format"], int) and state["format"] > FORMAT
        raise DlrunError(f"{path} is a dlrun checkpoint of format {state['format']!r}; this dlrun ({__version__}) "
                         f"reads formats 1 to {FORMAT}. " + ("It was written by a newer dlrun: upgrade dlrun to use it."
                                                            if newer else "Use the dlrun version that wrote it."))
    if isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
        raise DlrunError(f"{path} holds only a model's weights (a state_dict), not a dlrun checkpoint: resuming "
                         f"and evaluating need the run's record (config, optimizer, preprocessing) that dlrun "
                         f"writes in checkpoints/last.pt and best.pt.")
    raise DlrunError(f"{path} is a PyTorch file holding a {type(state).__name__}, not a dlrun checkpoint.")


def _reason(exc):
    """The informative line of a torch.load error (it names the refused global, if any)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line), lines[0] if lines else type(exc).__name__)[:200]


def load_model_state(model, state, path):
    """Load weights, turning a shape mismatch into a message that names the parameters."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line or "Missing" in line
                 or "Unexpected" in line]
        raise DlrunError(
            f"{path} does not fit the configured model: {'; '.join(lines[:3]) or str(exc)[:300]}. "
            f"Use the same model and dataset settings as the run that wrote it."
        ) from None
