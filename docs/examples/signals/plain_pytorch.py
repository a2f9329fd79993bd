"""The same training without dlrun: what experiment=paper reproduces (see the README).

    PYTHONPATH=docs/examples/signals python docs/examples/signals/plain_pytorch.py --model cnn1d

Standardise with the training rows' statistics, draw batches with replacement, Adam at 1e-3 for
15 epochs, test the last weights. Prints the test accuracy.
"""

import argparse

import numpy as np
import signals
import torch
from torch import nn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["cnn1d", "gru"], default="cnn1d")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    data = signals.signals()
    x, x_test = (torch.as_tensor(a, dtype=torch.float32) for a in (data.x, data.x_test))
    y, y_test = torch.as_tensor(data.y), torch.as_tensor(data.y_test)
    mean, std = x.mean(0), x.std(0)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    model = getattr(signals, args.model)((x.shape[1],), 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64,
                                         sampler=torch.utils.data.RandomSampler(x, replacement=True))
    for _ in range(15):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
