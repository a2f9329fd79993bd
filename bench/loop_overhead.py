"""Loop overhead: dlrun's training loop vs plain PyTorch loops, measured in one process.

Same model (same initial weights), data, batch size, optimizer and number of
steps for every contender; epochs of the hand-written loops are interleaved so
that machine noise hits them alike (Lightning runs one fit afterwards, its
epochs timed by a callback), and the median epoch time is reported as a ratio
to the plain tensor loop.

    python bench/loop_overhead.py                 # digits MLP batch 32 and CNN batch 64; the README's
                                                  # 1-D signals CNN, batch 100 drawn with replacement
    python bench/loop_overhead.py --epochs 3      # quicker
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import dlrun
from dlrun import build
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState

SIGNALS = Path(__file__).resolve().parent.parent / "docs" / "examples" / "signals"
# (label, overrides, config directory, sampling): the plain loops draw their rows the same way
CASES = [
    ("mlp, batch 32", ["model=mlp", "trainer.batch_size=32"], None, "shuffle"),
    ("cnn, batch 64", ["model=cnn", "trainer.batch_size=64"], None, "shuffle"),
    ("signals cnn1d, batch 100 with replacement", ["plugins=[signals]", "dataset=signals", "model=cnn1d",
     "trainer.batch_size=100", "trainer.sampling=replacement"], SIGNALS / "conf", "replacement"),
]


def setup(overrides, config_dir):
    if config_dir is not None:
        sys.path.insert(0, str(config_dir.parent))  # the plugin module beside its configs
    cfg = dlrun.compose([*overrides, "device=cpu"], config_dir=str(config_dir) if config_dir else None)
    build.load_components(cfg)
    torch.manual_seed(0)
    data = build.dataset(cfg)
    net = build.model(cfg, data)
    return cfg, data, net


def dlrun_epoch(cfg, data, net):
    loop = build.loop(cfg, data, net, torch.device("cpu"))
    state, flag = FitState(), Stop()
    return lambda: loop.train_epoch(state, None, flag)


def plain_epoch(data, net, batch_size, sampling):
    """A hand-written loop over tensors, as lean as it gets."""
    x, y = data.train.x.float(), data.train.y
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def epoch():
        net.train()
        perm = (torch.randint(0, len(y), (len(y),), generator=gen) if sampling == "replacement"
                else torch.randperm(len(y), generator=gen))
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return epoch


def dataloader_epoch(data, net, batch_size):
    """The tutorials' loop: DataLoader(TensorDataset) and a running loss read with .item()."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.train.x.float(), data.train.y),
                                         batch_size=batch_size, shuffle=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def epoch():
        net.train()
        running = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
        return running

    return epoch


def lightning_epochs(data, net, batch_size, epochs):
    """PyTorch Lightning's Trainer on the same DataLoader: one fit over warm-up + `epochs`
    epochs, each epoch timed by a callback (one fit, so set-up is not counted per epoch)."""
    try:
        import lightning as L
    except ImportError:
        return None
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, _):
            xb, yb = batch
            loss = F.cross_entropy(self.net(xb), yb)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class EpochTimer(L.Callback):
        def __init__(self):
            self.times = []

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.times.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.train.x.float(), data.train.y),
                                         batch_size=batch_size, shuffle=True)
    trainer = L.Trainer(max_epochs=epochs + 1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[timer])
    trainer.fit(Module(), loader)
    return timer.times[1:]


def measure(overrides, config_dir, sampling, epochs):
    cfg, data, net = setup(overrides, config_dir)
    batch_size = cfg.trainer.batch_size
    contenders = {
        "plain tensor loop": plain_epoch(data, copy.deepcopy(net), batch_size, sampling),
        "dlrun loop": dlrun_epoch(cfg, data, copy.deepcopy(net)),
        "DataLoader(TensorDataset) loop": dataloader_epoch(data, copy.deepcopy(net), batch_size),
    }
    times = {name: [] for name in contenders}
    for epoch in contenders.values():  # warm-up: allocator, autograd graph caches, Lightning set-up
        epoch()
    for _ in range(epochs):
        for name, epoch in contenders.items():
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
    lightning = lightning_epochs(data, copy.deepcopy(net), batch_size, epochs)
    if lightning is not None:
        times["Lightning Trainer (one fit, epochs timed by a callback)"] = lightning
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="timed epochs per contender (median reported)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, the training split of each case")
    for label, overrides, config_dir, sampling in CASES:
        result = measure(overrides, config_dir, sampling, args.epochs)
        base = result["plain tensor loop"]
        print(f"\n{label}: median seconds per epoch over {args.epochs} epochs")
        for name, seconds in result.items():
            print(f"  {name:55s} {seconds * 1000:8.1f} ms   {seconds / base:5.2f}x plain")


if __name__ == "__main__":
    main()
