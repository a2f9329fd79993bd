"""GPU throughput on CIFAR-10-shaped synthetic data: images per second for the
cnn and resnet18 models with fp32, bf16 autocast, channels_last and
torch.compile. Needs a CUDA device; elsewhere it says so and exits.

    python bench/gpu.py --steps 50 --batch 512
"""

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from dlrun.models import build

VARIANTS = [("fp32", None, False, False), ("bf16", torch.bfloat16, False, False),
            ("bf16 + channels_last", torch.bfloat16, True, False), ("bf16 + channels_last + compile", torch.bfloat16, True, True)]


def throughput(name, dtype, channels_last, compile_, steps, batch):
    device = torch.device("cuda")
    model = build({"name": name}, (3, 32, 32), 10).to(device)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=device).float().div_(255)
    y = torch.randint(0, 10, (batch,), device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_ else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):  # warm-up, and compilation
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA device; there is none here, so nothing was measured.", file=sys.stderr)
        sys.exit(2)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, batch {args.batch}")
    for model in ("cnn", "vgg_fast", "resnet18"):
        base = None
        for label, dtype, cl, comp in VARIANTS:
            rate = throughput(model, dtype, cl, comp, args.steps, args.batch)
            base = base or rate
            print(f"  {model:9s} {label:32s} {rate:10.0f} images/s   {rate / base:5.2f}x fp32")


if __name__ == "__main__":
    main()
