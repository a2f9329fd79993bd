"""What `dlrun experiment=digits_fast` does, as a plain PyTorch script: the reference of
bench/time_to_result.py.

The same data (scikit-learn's digits, values / 16), the same stratified split (15% test, then 10%
of all rows for validation, by the same seeds), the same batch-normalised CNN, Adam at 3e-3 under
a one-cycle schedule peaking at 10x, label smoothing 0.1, 12 epochs of batches of 32; the epoch
with the lowest validation loss is evaluated on test. Prints the test accuracy.
"""

import copy

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED, EPOCHS, BATCH = 42, 12, 32


def model():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(), nn.Dropout(0.25), nn.Linear(256, 128),
                         nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    epochs = parser.parse_args().epochs
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None])
    y = torch.from_numpy(digits.target).long()
    rows = np.arange(len(y))
    rest, test = train_test_split(rows, test_size=0.15, random_state=SEED, stratify=y)
    train, val = train_test_split(rest, test_size=0.1 / 0.85, random_state=SEED + 1, stratify=y[rest])
    net = model()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = -(-len(train) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-2, epochs=epochs, steps_per_epoch=steps,
                                                   pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x_train, y_train = x[train], y[train]
    best_loss, best_state = float("inf"), None
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(train))
        for i in range(steps):
            batch = order[i * BATCH:(i + 1) * BATCH]
            optimizer.zero_grad()
            loss_fn(net(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            val_loss = loss_fn(net(x[val]), y[val]).item()
        if val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    with torch.no_grad():
        accuracy = (net(x[test]).argmax(1) == y[test]).float().mean().item()
    print(f"test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
