"""The order of training rows: one seeded index stream, whichever path holds the data.

How training rows are drawn each epoch (trainer.sampling): `shuffle`, every row once in a
fresh order; `replacement`, as many uniform draws with replacement as there are rows (torch's
RandomSampler(replacement=True)); `oversample`, as many draws with rare classes as likely as
common ones; `undersample`, each class as many rows as the rarest has, a fresh draw each epoch.

The draws are made on the CPU from one generator seeded by the run, so device-resident tensors
and a DataLoader draw the same rows in the same order, on any device; under torchrun every
process draws the same order and takes its own equal share (rank, rank + world, ...). The
generator's state at an epoch's start is what a mid-epoch checkpoint keeps.
"""

import torch

from dlrun.errors import ConfigError


def balanced_weights(labels):
    """Per-row weights 1/count(class): a weighted draw then sees classes equally often."""
    counts = torch.bincount(labels)
    return (1.0 / counts.float())[labels]


def rarest(labels):
    """Rows of the rarest class present."""
    return int(torch.unique(labels, return_counts=True)[1].min())


def _shuffle(labels, generator):
    return torch.randperm(len(labels), generator=generator)


def _replacement(labels, generator):
    return torch.randint(0, len(labels), (len(labels),), generator=generator)


def _oversample(labels, generator):
    return torch.multinomial(balanced_weights(labels), len(labels), replacement=True, generator=generator)


def _undersample(labels, generator):
    per_class, picks = rarest(labels), []
    for c in torch.unique(labels).tolist():
        rows = torch.nonzero(labels == c).view(-1)
        picks.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    chosen = torch.cat(picks)
    return chosen[torch.randperm(len(chosen), generator=generator)]


# trainer.sampling: name -> (labels, generator) -> the epoch's row indices (all processes)
SAMPLING = {
    "shuffle": _shuffle,
    "replacement": _replacement,
    "oversample": _oversample,
    "undersample": _undersample,
}


def locality_of(dataset):
    """(group of each row, shuffle buffer) of a dataset whose rows are read fastest group by group
    (tar shards: `dataset.locality()`), seen through Subsets; None for any other dataset."""
    rows = None
    while isinstance(dataset, torch.utils.data.Subset):
        index = torch.as_tensor(dataset.indices)
        rows, dataset = index if rows is None else index[rows], dataset.dataset
    if not hasattr(dataset, "locality"):
        return None
    groups, buffer = dataset.locality()
    groups = torch.as_tensor(groups)
    return (groups if rows is None else groups[rows]), buffer


def streamed_shuffle(groups, buffer):
    """A shuffle as a streaming reader makes it: the groups (shards) in a fresh order, each one's
    rows in order, through a shuffle buffer of `buffer` rows (the next row out is a random one of
    the buffer, replaced by the next row in; the last ones leave in a random order)."""
    _, groups = torch.unique(groups, return_inverse=True)

    def draw(labels, generator):
        place = torch.randperm(int(groups.max()) + 1, generator=generator)
        rows = torch.argsort(place[groups], stable=True).tolist()
        size = min(buffer, len(rows))
        picks = torch.randint(0, size, (len(rows) - size,), generator=generator).tolist()
        held, out = rows[:size], []
        for row, k in zip(rows[size:], picks):
            out.append(held[k])
            held[k] = row
        out += [held[k] for k in torch.randperm(size, generator=generator).tolist()]
        return torch.tensor(out, dtype=torch.int64)

    return draw


class IndexStream:
    """Each epoch's training row indices for this process (`shard` = (rank, world)); `locality`
    (see locality_of) makes the shuffle a streamed one."""

    def __init__(self, labels, sampling, seed, shard=(0, 1), locality=None):
        labels = labels.detach().cpu()
        if labels.dim() > 1 and labels.shape[1] > 1:  # several labels (or targets) a row: only the rows count
            if sampling in ("oversample", "undersample"):
                raise ConfigError(f"trainer.sampling={sampling} balances the classes of rows with one class each; "
                                  f"these rows have {labels.shape[1]} labels (or targets): use shuffle or replacement.")
            labels = torch.zeros(len(labels))
        self.labels = labels.reshape(len(labels)).long()
        self.sampling = sampling
        self.draw = streamed_shuffle(*locality) if locality and sampling == "shuffle" else SAMPLING[sampling]
        self.rank, self.world = shard
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_start = self.generator.get_state()

    @property
    def rows(self):
        """Rows drawn per epoch by all processes."""
        if self.sampling == "undersample":
            return rarest(self.labels) * len(torch.unique(self.labels))
        return len(self.labels)

    def __len__(self):
        """Rows per epoch in this process (its equal share in data-parallel training)."""
        return self.rows // self.world

    def epoch(self):
        """The next epoch's indices (a CPU tensor of int64)."""
        self._epoch_start = self.generator.get_state()
        order = self.draw(self.labels, self.generator)
        if self.world > 1:
            order = order[: len(order) // self.world * self.world][self.rank::self.world]
        return order

    def state_dict(self, mid_epoch):
        return {"shuffle": self._epoch_start if mid_epoch else self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["shuffle"])
