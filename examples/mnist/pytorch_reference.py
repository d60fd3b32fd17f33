#!/usr/bin/env python3
"""Trains the MNIST example's CNN in PyTorch and saves its state_dict, for
`cargo run --release --example mnist -- --init-from FILE --epochs 0`.

    pip install torch numpy
    python3 examples/mnist/pytorch_reference.py [--epochs N] [--out mnist_cnn.pt]

Same architecture and attribute names as examples/mnist/model.rs (blocks of
conv3x3 -> BatchNorm2d -> ReLU, max-pools, hidden linear -> BatchNorm1d ->
ReLU -> dropout -> head), same input scaling (pixels / 255 standardized with
the training set's mean and population std), read from the same IDX files.
Prints the test accuracy PyTorch measures in evaluation mode.
"""
import argparse
import gzip
import pathlib
import struct

import numpy as np
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[2]


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x)))


class Cnn(nn.Module):
    def __init__(self, w=16, hidden=128):
        super().__init__()
        self.blocks = nn.ModuleList([Block(1, w), Block(w, w), Block(w, 2 * w), Block(2 * w, 2 * w)])
        self.hidden = nn.Linear(2 * w * 7 * 7, hidden, bias=False)
        self.hidden_norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, 10)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = self.blocks[1](self.blocks[0](x))
        x = nn.functional.max_pool2d(x, 2, 2)
        x = self.blocks[3](self.blocks[2](x))
        x = nn.functional.max_pool2d(x, 2, 2)
        x = torch.relu(self.hidden_norm(self.hidden(x.flatten(1))))
        return self.head(self.dropout(x))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", default="mnist_cnn.pt")
    args = p.parse_args()
    d = pathlib.Path(args.data)
    train_x = idx(d / "train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    train_y = idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64)
    test_x = idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    test_y = idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    mean = train_x.astype(np.float64).mean()
    std = train_x.astype(np.float64).std()
    scale = lambda x: torch.from_numpy(((x - mean) / std).astype(np.float32)).unsqueeze(1)
    xs, ys, xt, yt = scale(train_x), torch.from_numpy(train_y), scale(test_x), torch.from_numpy(test_y)
    torch.manual_seed(0)
    model = Cnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), 128):
            b = order[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xs[b]), ys[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item() for i in range(0, len(xt), 1000))
    torch.save(model.state_dict(), args.out)
    print(f"PyTorch {torch.__version__}: {args.epochs} epoch(s), test accuracy {100.0 * correct / len(xt):.2f}% "
          f"(evaluation mode), input mean {mean:.4f} std {std:.4f}; saved {args.out}")


if __name__ == "__main__":
    main()
