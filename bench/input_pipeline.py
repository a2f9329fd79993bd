"""The input pipeline of an image folder: dlrun (decoded once into its cache, then held as
tensors) against the plain torchvision pipeline (ImageFolder + DataLoader, decoding every image
in every epoch), with the same worker processes, batch size and model (a logistic model, so the
data path is nearly all that is timed), each epoch timed, in the same process.

    python bench/input_pipeline.py                  # 20,000 PNGs of 64x64, 3 epochs, auto workers
    python bench/input_pipeline.py --images 400 --epochs 2    # a check of this script

dlrun's first epoch counts its data phase (the decoding into the cache, in worker processes)
with the epoch's training; its cache is emptied before it runs. Targets: the first epoch no
slower than the plain pipeline's, later epochs at least 5x faster.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CLASSES = 10


def write_folder(root, images, size):
    """`images` PNGs in CLASSES sub-folders, each class a little brighter than the last."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        label = i % CLASSES
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 200, (size, size, 3), dtype=np.uint8) + np.uint8(5 * label)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")


def plain(root, size, epochs, workers, batch_size):
    """Seconds of each epoch of the torchvision pipeline: ImageFolder, a DataLoader, a logistic model."""
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    steps = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), transform=steps), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def dlrun(root, size, epochs, workers, batch_size, scratch):
    """Seconds of each epoch of `dlrun dataset=image_folder model=logistic`, the first with its data phase."""
    import dlrun as api

    run_dir = scratch / "run"
    api.run(["dataset=image_folder", f"dataset.root={root}", f"dataset.image_size={size}",
             f"dataset.cache_dir={scratch / 'cache'}", "model=logistic", f"trainer.batch_size={batch_size}",
             f"trainer.max_epochs={epochs}", f"trainer.num_workers={workers}", "split.val=0", "split.test=0",
             "trainer.progress=false", "plots=[]", "report=false", "device=cpu"], run_dir=run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv") as file:
        header, *rows = [line.strip().split(",") for line in file]
    seconds = [float(row[header.index("seconds")]) for row in rows]
    return [summary["timings"]["data"] + seconds[0], *seconds[1:]], summary["timings"]["data"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", default="auto", help="DataLoader workers of both (auto: dlrun's choice)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    from dlrun.data.batches import worker_count

    workers = worker_count(args.workers if args.workers == "auto" else int(args.workers))
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        started = time.perf_counter()
        write_folder(scratch / "images", args.images, args.size)
        print(f"{args.images:,} PNGs of {args.size}x{args.size} written in {time.perf_counter() - started:.1f} s; "
              f"{workers} worker process(es) each, batch {args.batch_size}, {os.cpu_count()} cores, torch "
              f"{torch.__version__}")
        theirs = plain(scratch / "images", args.size, args.epochs, workers, args.batch_size)
        ours, decoding = dlrun(scratch / "images", args.size, args.epochs, workers, args.batch_size, scratch)
    print(f"{'epoch':>5}  {'plain torchvision':>18}  {'dlrun':>8}  ratio")
    for epoch, (a, b) in enumerate(zip(theirs, ours), 1):
        print(f"{epoch:>5}  {a:>16.2f} s  {b:>6.2f} s  {a / b:5.1f}x" + (f"  (dlrun: {decoding:.2f} s decoding once)"
                                                                       if epoch == 1 else ""))
    print(f"first epoch: dlrun / plain = {ours[0] / theirs[0]:.2f} (target <= 1)")
    if len(ours) > 1:
        later = statistics.median(theirs[1:]) / statistics.median(ours[1:])
        print(f"later epochs: dlrun {later:.1f}x faster than plain (target >= 5x)")


if __name__ == "__main__":
    main()
