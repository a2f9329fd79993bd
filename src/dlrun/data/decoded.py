"""An image folder decoded once: every image loaded, resized (and greyed) as the folder's load
steps say, into one uint8 array (N, C, S, S) in the data cache, memory-mapped by later runs.

The cache file is named after a hash of what its pixels depend on: each file's path, size and
modification time, the load settings and this format's version; a changed, added or removed
file (or another image size) names another file, so a stale cache is never read. It is written
to a temporary name and renamed when complete: a run killed while decoding leaves no cache.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from dlrun.data.base import file_stamps

FORMAT = 1  # the layout of the cached array; a change makes every older cache stale
FOLDER = "image_folders"  # where in the data cache the decoded arrays are (derived data, not a source)


def key_of(paths, settings):
    """The hash of what the decoded pixels depend on."""
    text = json.dumps({"format": FORMAT, "settings": settings, "files": file_stamps(paths)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def decoded(paths, load, settings, cache_dir, say):
    """The uint8 images (N, C, S, S) of `paths` as `load(path)` makes them (a CHW uint8 array),
    read from the cache in `cache_dir`, or decoded into it first (`say` announces that)."""
    cache = Path(cache_dir).expanduser() / FOLDER / f"{key_of(paths, settings)}.npy"
    if not cache.is_file():
        from dlrun.data.batches import worker_count

        workers = worker_count("auto")
        say(f"decoding {len(paths):,} images once into {cache}, {_processes(workers)} (later runs read them from there)")
        _write(cache, paths, load, workers)
    return np.load(cache, mmap_mode="r")


def _processes(workers):
    return f"in {workers} worker processes" if workers > 1 else "in one worker process" if workers else "here"


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, load):
        self.paths, self.load = paths, load

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return torch.from_numpy(self.load(self.paths[i]))


# Images a decoding worker hands back at a time.
CHUNK = 256


def _write(cache, paths, load, workers):
    """Decode `paths` in `workers` DataLoader processes (which leave Ctrl-C and SIGTERM to this
    one) into a temporary file, renamed to `cache` once whole."""
    from rich.progress import track

    from dlrun.console import console
    from dlrun.data.batches import worker_init

    cache.parent.mkdir(parents=True, exist_ok=True)
    first = load(paths[0])
    partial = cache.with_name(f".{cache.stem}.{os.getpid()}.npy.tmp")
    loader = torch.utils.data.DataLoader(_Files(paths, load), batch_size=CHUNK, num_workers=workers,
                                         worker_init_fn=worker_init,
                                         generator=torch.Generator())  # not the run's seeded generator
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(paths), *first.shape))
        for i, images in enumerate(track(loader, description="decoding", console=console, transient=True,
                                         disable=not console.is_terminal)):
            array[i * CHUNK:i * CHUNK + len(images)] = images.numpy()
        array.flush()
        del array
        os.replace(partial, cache)
    finally:
        partial.unlink(missing_ok=True)
