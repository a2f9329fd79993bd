"""dlrun's own training loop against a hand-written one on a GPU: images per second of an
epoch over device-resident, CIFAR-10-shaped uint8 images, for cnn, vgg_fast, resnet18 and the
airbench94 network (written here from its published description), with fp32, bf16 autocast,
channels_last and torch.compile. Both contenders train the same model (same initial weights)
with SGD on the same data and batch size, in one process, and alternate.

    python bench/gpu.py                          # needs a CUDA device; says so and exits 2 without one
    python bench/gpu.py --device cpu --tiny      # the same code on the CPU with a tiny model (the tests run it)

Target: dlrun >= 0.9x the hand-written loop.
"""

import argparse
import copy
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import dlrun
from dlrun import build, models
from dlrun import data as datasets
from dlrun.models import MODELS, Network
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
VARIANTS = [("fp32", []), ("bf16", ["device.precision=bf16"]),
            ("bf16 + channels_last", ["device.precision=bf16", "device.channels_last=true"]),
            ("bf16 + channels_last + compile", ["device.precision=bf16", "device.channels_last=true",
                                                "device.compile=true", "device.compile_mode=default"])]


@MODELS.register("airbench94")
def airbench94(input_shape, num_outputs, widths=(64, 256, 256)):
    """The airbench94 CIFAR-10 network: a 2x2 whitening convolution (its weights are fixed from
    the data's patches there; random here, which costs the same), three groups of
    conv-pool-BN-GELU-conv-BN-GELU, a 3x3 max-pool and a linear head scaled by 1/9."""
    def group(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout, momentum=0.4),
                nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.4),
                nn.GELU()]

    whiten = nn.Conv2d(input_shape[0], 24, 2)
    whiten.weight.requires_grad_(False)
    layers, cin = [whiten, nn.GELU()], 24
    for width in widths:
        layers += group(cin, width)
        cin = width
    head = nn.Linear(cin, num_outputs, bias=False)
    return Network(nn.Sequential(*layers, nn.MaxPool2d(3), nn.Flatten()), nn.Sequential(head, Scale(1 / 9)))


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def images(n, size, device):
    """Synthetic uint8 images (n, 3, size, size) and labels, prepared as dlrun prepares a dataset."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    raw = datasets.Data(x=x, y=y, image=True, mean=MEAN, std=STD, x_test=x[:10], y_test=y[:10])
    split = dlrun.compose(["split.val=0"]).split
    return datasets.prepare(raw, split)


def dlrun_epoch(model, data, overrides, batch, device):
    cfg = dlrun.compose([f"trainer.batch_size={batch}", "optimizer=sgd", "optimizer.lr=0.01", "optimizer.momentum=0.9",
                         "trainer.progress=false", *overrides])
    loop = build.loop(cfg, data, model, device)
    state, flag = FitState(), Stop()
    return lambda: loop.train_epoch(state, None, flag)


def plain_epoch(model, data, overrides, batch, device):
    """What a careful PyTorch user writes for the same epoch: device-resident uint8 images,
    converted and normalised per batch, autocast, channels_last and compile as asked."""
    bf16, channels_last, compiled = ("device.precision=bf16" in overrides, "device.channels_last=true" in overrides,
                                     "device.compile=true" in overrides)
    x, y = data.train.x.to(device), data.train.y.to(device)
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (MEAN, STD))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(1)

    def epoch():
        model.train()
        order = torch.randperm(len(y), device=device, generator=generator)
        for i in range(0, len(y), batch):
            rows = order[i:i + batch]
            xb = (x[rows].float().div_(255) - mean) / std
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(forward(xb), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return epoch


def timed(epoch, device, rows, rounds):
    """Images per second of the fastest of `rounds` epochs (the first one warms up and compiles)."""
    epoch()
    best = float("inf")
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        epoch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return rows / best


def compare(name, variant, overrides, data, batch, device, rounds):
    model = models.build({"name": name} if name != "cnn" else {"name": "cnn", "batchnorm": True},
                               data.input_shape, 10).to(device)
    ours = dlrun_epoch(copy.deepcopy(model), data, overrides, batch, device)
    theirs = plain_epoch(copy.deepcopy(model), data, overrides, batch, device)
    plain_rate = timed(theirs, device, len(data.train), rounds)
    dlrun_rate = timed(ours, device, len(data.train), rounds)
    print(f"  {name:10s} {variant:32s} hand-written {plain_rate:10.0f} images/s   dlrun {dlrun_rate:10.0f} images/s"
          f"   {dlrun_rate / plain_rate:5.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and data: the CPU check of this script")
    parser.add_argument("--images", type=int, default=20480)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA device; there is none here, so nothing was measured "
              "(python bench/gpu.py --device cpu --tiny checks the same code on the CPU).", file=sys.stderr)
        sys.exit(2)
    device = torch.device(args.device)
    names, variants = ["cnn", "vgg_fast", "resnet18", "airbench94"], VARIANTS
    images_n, size = args.images, 32
    if args.tiny:
        names, variants, images_n, size, args.batch = ["cnn"], VARIANTS[:1], 256, 8, 64
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{where}, torch {torch.__version__}, {images_n} images of {size}x{size}, batch {args.batch}, "
          f"best of {args.rounds} epochs")
    data = images(images_n, size, device)
    for name in names:
        for variant, overrides in variants:
            if "compile" in variant and device.type != "cuda":
                continue
            compare(name, variant, overrides, data, args.batch, device, args.rounds)


if __name__ == "__main__":
    main()
