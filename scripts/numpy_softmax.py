"""The whole-process peer of scripts/benchmark.py: softmax regression on MNIST in 18 lines of NumPy.

It reads the four gzip IDX files and trains the way `jax-softmax train` does: the first
54,000 training images, float32 pixels / 255, zero initial weights, mini-batch SGD with
batch 200 and learning rate 0.5, a fresh shuffle per epoch, 10 epochs (or EPOCHS); then
it prints the test accuracy.

    python scripts/numpy_softmax.py DIR [EPOCHS]
"""

import gzip
import sys

import numpy as np


def read(name):  # IDX: two zero bytes, a type byte, the number of dimensions, big-endian sizes, the data
    data = gzip.open(f"{sys.argv[1]}/{name}-ubyte.gz").read()
    shape = np.frombuffer(data, ">u4", data[3], 4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(shape)


x = read("train-images-idx3").reshape(-1, 784)[:54_000] / np.float32(255)
y = read("train-labels-idx1")[:54_000]
x_test, y_test = read("t10k-images-idx3").reshape(-1, 784) / np.float32(255), read("t10k-labels-idx1")
w, b = np.zeros((784, 10), np.float32), np.zeros(10, np.float32)
rng, rows = np.random.default_rng(0), np.arange(200)
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 10):
    for idx in rng.permutation(len(x))[: len(x) // 200 * 200].reshape(-1, 200):
        xb = x[idx]
        p = np.exp((z := xb @ w + b) - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[rows, y[idx]] -= 1  # 200 times the gradient of the mean cross-entropy with respect to the logits
        w -= np.float32(0.5 / 200) * (xb.T @ p)
        b -= np.float32(0.5 / 200) * p.sum(axis=0)
print(f"test accuracy {100 * np.mean((x_test @ w + b).argmax(axis=1) == y_test):.2f}%")
