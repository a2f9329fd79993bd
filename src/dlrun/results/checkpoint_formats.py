"""What each checkpoint format holds, and how a file of an older one becomes the current one.

A format number names what a checkpoint holds and what its checksum covers; changing either
bumps FORMAT and adds one entry to MIGRATIONS, which turns a loaded state of format n into
format n + 1 by filling in what the version that wrote it meant. tests/checkpoints keeps a
file of every format, and the tests load, evaluate and resume each of them, so a change that
breaks old files without a migration fails there.

1: the checksum covers only the tensors.
2: the checksum covers every field.
3: the preprocessing always records the input scale of an image model (pixel_max) and the
   training inputs' range (input_range, null when not known); the bad-step record is three
   numbers (count, first bad step, its loss).
4: the preprocessing records the test-time augmentation the model is applied with (tta, null:
   none).
"""

import hashlib

import torch

from dlrun.data.tabular import DIGITS_PIXEL_MAX

FORMAT = 4
TENSORS_ONLY = (1,)  # formats whose checksum leaves the config and record unverified


def tensor_checksum(state):
    """Format 1's checksum: SHA-256 over every tensor of `state` with its place, in a fixed order."""
    digest = hashlib.sha256()
    for place, tensor in _tensors(state):
        digest.update(place.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _tensors(node, place=""):
    if torch.is_tensor(node):
        yield place, node
    elif isinstance(node, dict):
        for key in sorted((k for k in node if k != "checksum"), key=str):
            yield from _tensors(node[key], f"{place}/{key}")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _tensors(item, f"{place}/{i}")


def _from_1(state):
    """Format 2 only widened the checksum; the contents were the same."""
    return state


def _from_2(state):
    """Format 2 files written before the input scale was recorded: an image model takes the
    scale its dataset declared (the digits builder's 0-16, every other image source 0-255);
    a bad-step record of four numbers also held the first bad gradient norm, no longer kept."""
    pre = state.get("preprocessing")
    if pre is not None:
        if pre.get("image") and pre.get("pixel_max") is None:
            dataset = ((state.get("config") or {}).get("dataset") or {}).get("name")
            pre["pixel_max"] = float(DIGITS_PIXEL_MAX if dataset == "digits" else 255)
        pre.setdefault("input_range", None)
    update = state.get("update")
    if update is not None and torch.is_tensor(update.get("bad")):
        update["bad"] = update["bad"][:3]
    return state


def _from_3(state):
    """Before format 4 no model was applied with test-time augmentation."""
    if state.get("preprocessing") is not None:
        state["preprocessing"].setdefault("tta", None)
    return state


MIGRATIONS = {1: _from_1, 2: _from_2, 3: _from_3}


def upgrade(state):
    """A verified state of any known format as a state of FORMAT."""
    while state["format"] < FORMAT:
        state = {**MIGRATIONS[state["format"]](state), "format": state["format"] + 1}
    return state


def known(found):
    return isinstance(found, int) and not isinstance(found, bool) and 1 <= found <= FORMAT
