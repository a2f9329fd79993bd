"""Batches for the training loop.

In-memory data lives on the training device and is batched by indexing with the
run's index stream (sampling.py). uint8 images are scaled and normalised there once,
for the whole tensor, when nothing random happens per batch; with augmentation
(or resizing) they stay uint8 and each batch is scaled, resized, augmented and
normalised as one tensor operation.
Datasets that do not fit go through a DataLoader instead, fed by the same index
stream, so both paths draw the same batches.

Two generators make resumption exact: the index stream's draws each epoch's order
(its state at the epoch's start is what a mid-epoch checkpoint keeps) and `augment`
draws per-batch randomness (its current state is kept).
"""

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlrun.data.policies import POLICIES, apply_policy, random_erasing
from dlrun.data.sampling import IndexStream, locality_of
from dlrun.machine import cores


class DeviceTransform:
    """uint8 -> [0, 1] float, optional resizing (antialiased bilinear, for models that need larger
    inputs), per-channel normalisation, optional augmentation."""

    def __init__(self, device, mean=None, std=None, augment=None, generator=None, resize=None):
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=device).view(shape) if mean else None
        self.std = torch.tensor(std, device=device).view(shape) if std else None
        self.augment = augment
        self.generator = generator
        self.resize = resize

    @classmethod
    def of(cls, data, device, augment=None, generator=None):
        """The transform of a prepared dataset (its normalisation and dataset.resize)."""
        return cls(device, data.mean, data.std, augment, generator, data.extra.get("resize"))

    def fixed(self, train):
        """Whether this transform gives every image the same result each time (no augmentation,
        no resizing), so that it can be applied once to the whole tensor."""
        return not self.resize and not (train and self.augment)

    def __call__(self, x, train):
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.resize and x.shape[-2:] != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", antialias=True, align_corners=False)
        if train and self.augment:
            x = augment_images(x, self.augment, self.generator)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if train and self.augment and self.augment.erases:
            x = random_erasing(x, self.generator)
        return x

    def denormalize(self, x):
        """Back to [0, 1] for display."""
        if self.mean is not None:
            x = x * self.std.to(x.device) + self.mean.to(x.device)
        return x.clamp(0, 1)


AUGMENTATIONS = {
    "flip": ("flip",),
    "crop": ("crop",),
    "rotate": ("rotate",),
    "standard": ("flip", "crop"),
    "cutout": ("cutout",),
    "trivial_augment": ("trivial_augment",),  # torchvision's policies, drawn per image (policies.py)
    "rand_augment": ("rand_augment",),
    "auto_augment": ("auto_augment",),
    "random_erasing": ("random_erasing",),  # after normalisation, as torchvision's recipes place it
}


@dataclass(frozen=True)
class Augmentation:
    """What regularization.augment asks for: its steps in order (a preset's, or a list of presets
    and steps combined: [flip, rotate]) and their parameters; a crop's shift and a cutout's hole of
    None scale with the image."""

    steps: tuple
    degrees: float = 15.0
    pad: int = None
    cutout: int = None
    num_ops: int = 2
    magnitude: int = 9

    @classmethod
    def of(cls, augment, degrees=15.0, pad=None, cutout=None, num_ops=2, magnitude=9):
        """The augmentation of `augment` (a name, a list of names, or None: none)."""
        if not augment:
            return None
        names = [augment] if isinstance(augment, str) else list(augment)
        steps = tuple(dict.fromkeys(step for name in names for step in AUGMENTATIONS[name]))
        return cls(steps, degrees, pad, cutout, num_ops, magnitude)

    @property
    def policies(self):
        return [step for step in self.steps if step in POLICIES]

    @property
    def erases(self):
        return "random_erasing" in self.steps

    def __str__(self):
        said = {"rotate": f"rotate ±{self.degrees:g}°", "crop": "crop" + (f" ±{self.pad}px" if self.pad else ""),
                "cutout": "cutout" + (f" {self.cutout}px" if self.cutout else ""),
                "rand_augment": f"rand_augment ({self.num_ops} ops, magnitude {self.magnitude})"}
        return " + ".join(said.get(step, step) for step in self.steps)


def augment_images(x, augmentation, generator):
    """Batched, seeded image augmentation of a float batch (N, C, H, W), step by step.

    Unless given, shifts and cutout holes scale with the image: an eighth and a quarter of its
    size (4 and 8 pixels on 32x32 CIFAR images, 1 and 2 on 8x8 digits).
    """
    size = min(x.shape[-2:])
    pad = augmentation.pad or max(1, round(size / 8))
    cutout = augmentation.cutout or max(1, round(size / 4))
    for step in augmentation.steps:
        if step == "flip":
            flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        elif step == "crop":
            x = random_translate(x, pad, generator)
        elif step == "rotate":
            x = random_rotate(x, augmentation.degrees, generator)
        elif step == "cutout":
            x = random_cutout(x, cutout, generator)
        elif step in POLICIES:
            x = apply_policy(x, step, generator, augmentation.num_ops, augmentation.magnitude)
    return x


def random_translate(x, pad, generator):
    """Random crop after zero padding: each image shifted by up to `pad` pixels."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), device=x.device, generator=generator)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_rotate(x, degrees, generator):
    angle = (torch.rand(x.shape[0], device=x.device, generator=generator) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def random_cutout(x, size, generator):
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device, generator=generator)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    hole = ((ys - cy).abs() <= size // 2) & ((xs - cx).abs() <= size // 2)
    return x.masked_fill(hole.unsqueeze(1), 0.0)


class TensorBatches:
    """Batches of a device-resident (x, y) by index."""

    path = "tensor"  # recorded in checkpoints: a resume keeps the path its run took
    workers = 0

    def __init__(self, part, batch_size, device, transform, train=False, seed=0, sampling="shuffle", shard=(0, 1)):
        self.x = part.x.to(device)
        self.y = part.y.to(device)
        self.batch_size = batch_size
        self.transform = transform
        if self.x.dtype == torch.uint8 and transform.fixed(train) and self.x.numel() * 4 <= WHOLE_TENSOR_BYTES:
            # Converted and normalised once, not at every batch of every epoch: evaluation batches
            # are then views, training batches one gather.
            self.x, self.transform = _transformed(self.x, transform, train), None
        self.train = train
        self.stream = IndexStream(part.y, sampling, seed, shard) if train else None

    @property
    def samples(self):
        """Rows per epoch in this process."""
        return len(self.stream) if self.stream is not None else len(self.y)

    def __len__(self):
        return math.ceil(self.samples / self.batch_size)

    def epoch(self, start=0):
        """(x, y) batches of one epoch, from batch `start` on."""
        # training: one host-to-device copy of the epoch's indices, drawn on the CPU
        order = self.stream.epoch().to(self.y.device, non_blocking=True) if self.stream is not None else None
        for i in range(start, len(self)):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            # Evaluation reads contiguous slices (views); training gathers its drawn rows.
            idx = rows if order is None else order[rows]
            x = self.x[idx]
            yield (x if self.transform is None else self.transform(x, self.train)), self.y[idx]

    def state_dict(self, mid_epoch):
        return {**self.stream.state_dict(mid_epoch), "path": self.path}

    def load_state_dict(self, state):
        self.stream.load_state_dict(state)


# The largest float32 copy of a uint8 image tensor made to convert it once (a larger one, such as
# resized ImageNet-sized images, is converted batch by batch).
WHOLE_TENSOR_BYTES = 4 * 2**30


def _transformed(x, transform, train, chunk=4096):
    """`transform` applied to the whole uint8 tensor `x`, in chunks (the peak is the float32 result
    and one chunk's intermediates)."""
    first = transform(x[:1], train)
    out = torch.empty((len(x), *first.shape[1:]), dtype=first.dtype, device=x.device)
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = transform(x[i:i + chunk], train)
    return out


class _StreamSampler(torch.utils.data.Sampler):
    """The index stream's epoch as a DataLoader's sampler, from row `skip` on (a mid-epoch resume
    reads only the rows it still needs)."""

    def __init__(self, stream):
        self.stream, self.skip = stream, 0

    def __iter__(self):
        return iter(self.stream.epoch()[self.skip:].tolist())

    def __len__(self):
        return len(self.stream) - self.skip


class LoaderBatches:
    """Batches through a DataLoader, for datasets that are not held in memory."""

    path = "loader"

    def __init__(self, part, batch_size, device, transform, train=False, seed=0, sampling="shuffle", num_workers=0,
                 shard=(0, 1)):
        self.device = device
        self.transform = transform
        self.train = train
        self.stream = IndexStream(part.y, sampling, seed, shard, locality_of(part.x)) if train else None
        self.sampler = _StreamSampler(self.stream) if train else None
        self.loader = torch.utils.data.DataLoader(
            part.x, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
            pin_memory=device.type == "cuda", persistent_workers=num_workers > 0, worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(seed))  # the workers' seeds only
        self.batch_size = batch_size
        self.workers = num_workers
        self.samples = len(self.stream) if train else len(part.y)  # rows per epoch here

    def __len__(self):
        return math.ceil(self.samples / self.batch_size)

    def epoch(self, start=0):
        """(x, y) batches of one epoch, from batch `start` on (training; evaluation reads them all)."""
        if self.sampler is not None:
            self.sampler.skip = start * self.batch_size
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            yield self.transform(x, self.train), y.to(self.device, non_blocking=True)

    def state_dict(self, mid_epoch):
        return {**self.stream.state_dict(mid_epoch), "path": self.path}

    def load_state_dict(self, state):
        self.stream.load_state_dict(state)


def worker_init(worker_id):
    """Each DataLoader worker derives its NumPy and Python seeds from torch's, and leaves a stop
    to the main process: Ctrl-C and SIGTERM reach a whole process group, and a worker they killed
    would end the run with a DataLoader error before it could write its step checkpoint; the main
    process finishes the step, writes it and shuts the workers down (a worker whose main process
    is gone exits by itself: torch's watchdog)."""
    import random
    import signal

    import numpy as np

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_batches(part, batch_size, device, transform, train, seed, sampling="shuffle", num_workers=0, shard=(0, 1),
                 resident=True):
    """Device-resident batches of an in-memory split, or (a Dataset, or `resident` False: the data
    does not fit on the device) batches streamed from host memory through a DataLoader with
    `num_workers` workers (a count, or auto: see `worker_count`)."""
    if torch.is_tensor(part.x) and resident:
        return TensorBatches(part, batch_size, device, transform, train, seed, sampling, shard)
    if torch.is_tensor(part.x):
        part = type(part)(torch.utils.data.TensorDataset(part.x, part.y), part.y, part.rows)
    return LoaderBatches(part, batch_size, device, transform, train, seed, sampling, worker_count(num_workers), shard)


# The most DataLoader workers auto starts: past this, more processes mostly add memory.
MAX_AUTO_WORKERS = 8


def worker_count(setting):
    """trainer.num_workers as a number: auto gives each process started on this machine (one, or
    torchrun's processes per node) its share of the cores it may run on, less one core for the
    training itself, at most MAX_AUTO_WORKERS; none where that leaves nothing."""
    if setting != "auto":
        return setting
    share = cores() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(0, min(MAX_AUTO_WORKERS, share - 1))


# The share of an accelerator's free memory that the data held on it may take (the model, its
# gradients, the optimizer state and the activations need the rest).
RESIDENT_SHARE = 0.5


def resident_bytes(parts):
    """Bytes the splits take on the device: float32 for every value (uint8 images are converted
    there once), plus the labels."""
    return sum(4 * part.x.numel() + part.y.numel() * part.y.element_size() for part in parts if torch.is_tensor(part.x))


def device_budget(device):
    """Bytes of data the device may hold, or None where the data already is in host memory (CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * RESIDENT_SHARE)
    if device.type == "mps":
        return int((torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()) * RESIDENT_SHARE)
    return None


class LimitedBatches:
    """The first `limit` batches of each epoch of `batches` (trainer.limit_*_batches): a
    different shuffled subset each epoch for training, the same first rows for evaluation."""

    def __init__(self, batches, limit):
        self.batches, self.limit = batches, limit
        self.batch_size = getattr(batches, "batch_size", None)
        self.path = batches.path
        self.workers = getattr(batches, "workers", 0)

    @property
    def samples(self):
        return min(self.limit * self.batch_size, self.batches.samples)

    def __len__(self):
        return min(self.limit, len(self.batches))

    def epoch(self, start=0):
        for i, batch in enumerate(self.batches.epoch(start), start):
            if i >= len(self):
                return  # the wrapped epoch is abandoned here: its generator state was saved at its start
            yield batch

    def state_dict(self, mid_epoch):
        return self.batches.state_dict(mid_epoch)

    def load_state_dict(self, state):
        self.batches.load_state_dict(state)


def batch_sizes(batches):
    """The distinct sizes of an epoch's batches: the full one and a smaller last one."""
    if not len(batches):
        return []
    last = batches.samples - (len(batches) - 1) * batches.batch_size
    return sorted({batches.batch_size, last})


def limit(batches, value):
    """`batches` limited to `value` batches per epoch: a count (int >= 1), a fraction in (0, 1]
    of them (at least one), or all (None)."""
    if value is None:
        return batches
    count = value if isinstance(value, int) else max(1, round(value * len(batches)))
    return batches if count >= len(batches) else LimitedBatches(batches, count)
