"""Batches for the training loop.

In-memory data lives on the training device and is batched by indexing with a
seeded on-device permutation. uint8 images are scaled and normalised there once,
for the whole tensor, when nothing random happens per batch; with augmentation
(or resizing) they stay uint8 and each batch is scaled, resized, augmented and
normalised as one tensor operation.
Datasets that do not fit go through a DataLoader instead.

How training rows are drawn each epoch (trainer.sampling): `shuffle`, every row once in a
fresh order; `replacement`, as many uniform draws with replacement as there are rows (torch's
RandomSampler(replacement=True)); `oversample`, as many draws with rare classes as likely as
common ones; `undersample`, each class as many rows as the rarest has. All draw from the
seeded `shuffle` generator, so they resume exactly.

Two generators make resumption exact: `shuffle` draws each epoch's order (its
state at the epoch's start is what a mid-epoch checkpoint keeps) and `augment`
draws per-batch randomness (its current state is kept).
"""

import math

import torch
import torch.nn.functional as F

from dlrun.errors import ConfigError


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
}


def augment_images(x, preset, generator, degrees=15.0):
    """Batched, seeded image augmentation of a float batch (N, C, H, W).

    Shifts and cutout holes scale with the image: an eighth and a quarter of
    its size (4 and 8 pixels on 32x32 CIFAR images, 1 and 2 on 8x8 digits).
    """
    size = min(x.shape[-2:])
    pad, cutout = max(1, round(size / 8)), max(1, round(size / 4))
    for step in AUGMENTATIONS[preset]:
        if step == "flip":
            flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        elif step == "crop":
            x = random_translate(x, pad, generator)
        elif step == "rotate":
            x = random_rotate(x, degrees, generator)
        elif step == "cutout":
            x = random_cutout(x, cutout, generator)
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

    def __init__(self, part, batch_size, device, transform, train=False, seed=0, sampling="shuffle", shard=(0, 1)):
        self.rank, self.world = shard if train else (0, 1)
        self.x = part.x.to(device)
        self.y = part.y.to(device)
        self.batch_size = batch_size
        self.transform = transform
        if self.x.dtype == torch.uint8 and transform.fixed(train) and self.x.numel() * 4 <= WHOLE_TENSOR_BYTES:
            # Converted and normalised once, not at every batch of every epoch: evaluation batches
            # are then views, training batches one gather.
            self.x, self.transform = _transformed(self.x, transform, train), None
        self.train = train
        self.shuffle = torch.Generator(device=device).manual_seed(seed)
        self.sampling = sampling if train else None
        self.weights = _balanced_weights(self.y) if self.sampling == "oversample" else None
        self.per_class = _rarest(self.y) if self.sampling == "undersample" else None
        self._epoch_start = self.shuffle.get_state()

    @property
    def rows(self):
        """Rows drawn per epoch (all processes): each class as often as the rarest with undersampling."""
        if self.per_class is not None:
            return self.per_class * len(torch.unique(self.y))
        return len(self.y)

    @property
    def samples(self):
        """Rows per epoch in this process (its equal share in data-parallel training)."""
        return self.rows // self.world

    def __len__(self):
        return math.ceil(self.samples / self.batch_size)

    def epoch(self, start=0):
        """(x, y) batches of one epoch, from batch `start` on.

        In data-parallel training every process draws the same permutation
        and takes its own equal share of it (rank, rank + world, ...).
        """
        self._epoch_start = self.shuffle.get_state()
        n = self.rows
        if not self.train:
            order = None
        elif self.sampling == "oversample":
            order = torch.multinomial(self.weights, n, replacement=True, generator=self.shuffle)
        elif self.sampling == "undersample":
            order = self._undersampled()
        elif self.sampling == "replacement":
            order = torch.randint(0, n, (n,), device=self.y.device, generator=self.shuffle)
        else:
            order = torch.randperm(n, device=self.y.device, generator=self.shuffle)
        if self.world > 1:
            order = order[: n // self.world * self.world][self.rank::self.world]
        for i in range(start, len(self)):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            # Evaluation reads contiguous slices (views); training gathers its shuffled rows.
            idx = rows if order is None else order[rows]
            x = self.x[idx]
            yield (x if self.transform is None else self.transform(x, self.train)), self.y[idx]

    def _undersampled(self):
        """As many rows of each class as the rarest has (a fresh draw each epoch), shuffled."""
        y = self.y.view(-1).long()
        picks = []
        for c in torch.unique(y).tolist():
            rows = torch.nonzero(y == c).view(-1)
            picks.append(rows[torch.randperm(len(rows), device=y.device, generator=self.shuffle)[:self.per_class]])
        chosen = torch.cat(picks)
        return chosen[torch.randperm(len(chosen), device=y.device, generator=self.shuffle)]

    def state_dict(self, mid_epoch):
        return {"shuffle": self._epoch_start if mid_epoch else self.shuffle.get_state()}

    def load_state_dict(self, state):
        self.shuffle.set_state(state["shuffle"])


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


class LoaderBatches:
    """Batches through a DataLoader, for datasets that are not held in memory."""

    def __init__(self, part, batch_size, device, transform, train=False, seed=0, sampling="shuffle", num_workers=0,
                 shard=(0, 1)):
        self.device = device
        self.transform = transform
        self.train = train
        self.shuffle = torch.Generator().manual_seed(seed)
        sampler = self.distributed_sampler = None
        sampling = sampling if train else "shuffle"
        rank, world = shard
        if train and world > 1:
            if sampling != "shuffle":
                raise ConfigError(f"trainer.sampling={sampling} under torchrun needs a dataset held in memory; "
                                  f"this one goes through a DataLoader, which shards shuffled data only.")
            # Each process reads its share; the shared seeded generator keeps the shards disjoint.
            sampler = self.distributed_sampler = torch.utils.data.distributed.DistributedSampler(
                part.x, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        elif sampling == "replacement":
            sampler = torch.utils.data.RandomSampler(part.x, replacement=True, generator=self.shuffle)
        elif sampling in ("oversample", "undersample"):
            # oversampling draws len(y) rows with replacement; undersampling draws, without
            # replacement, as many rows as k times the rarest class (classes equal in expectation)
            under = sampling == "undersample"
            count = _rarest(part.y) * len(torch.unique(part.y)) if under else len(part.y)
            sampler = torch.utils.data.WeightedRandomSampler(
                _balanced_weights(part.y), count, replacement=not under, generator=self.shuffle)
        self.loader = torch.utils.data.DataLoader(
            part.x, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
            generator=self.shuffle, num_workers=num_workers, pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0, worker_init_fn=_seed_worker,
        )
        self.batch_size = batch_size
        self.samples = len(sampler) if sampler is not None else len(part.y)  # rows per epoch here
        self._epoch_start = self.shuffle.get_state()

    def __len__(self):
        return len(self.loader)

    def epoch(self, start=0):
        self._epoch_start = self.shuffle.get_state()
        if self.distributed_sampler is not None:
            self.distributed_sampler.set_epoch(int(torch.randint(0, 2**31, (1,), generator=self.shuffle)))
        for i, (x, y) in enumerate(self.loader):
            if i >= start:
                x = x.to(self.device, non_blocking=True)
                yield self.transform(x, self.train), y.to(self.device, non_blocking=True)

    def state_dict(self, mid_epoch):
        return {"shuffle": self._epoch_start if mid_epoch else self.shuffle.get_state()}

    def load_state_dict(self, state):
        self.shuffle.set_state(state["shuffle"])


def _rarest(y):
    """Rows of the rarest class present."""
    return int(torch.unique(y.view(-1), return_counts=True)[1].min())


def _balanced_weights(y):
    """Per-sample weights 1/count(class): a weighted sampler then sees classes equally often."""
    counts = torch.bincount(y.view(-1).long())
    return (1.0 / counts.float())[y.view(-1).long()]


def _seed_worker(worker_id):
    """Each DataLoader worker derives its NumPy and Python seeds from torch's."""
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_batches(part, batch_size, device, transform, train, seed, sampling="shuffle", num_workers=0, shard=(0, 1),
                 resident=True):
    """Device-resident batches of an in-memory split, or (a Dataset, or `resident` False: the data
    does not fit on the device) batches streamed from host memory through a DataLoader."""
    if torch.is_tensor(part.x) and resident:
        return TensorBatches(part, batch_size, device, transform, train, seed, sampling, shard)
    if torch.is_tensor(part.x):
        part = type(part)(torch.utils.data.TensorDataset(part.x, part.y), part.y, part.rows)
    return LoaderBatches(part, batch_size, device, transform, train, seed, sampling, num_workers, shard)


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


def limit(batches, value):
    """`batches` limited to `value` batches per epoch: a count (int >= 1), a fraction in (0, 1]
    of them (at least one), or all (None)."""
    if value is None:
        return batches
    count = value if isinstance(value, int) else max(1, round(value * len(batches)))
    return batches if count >= len(batches) else LimitedBatches(batches, count)
