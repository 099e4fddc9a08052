"""Two saved models on digits written by other people than MNIST's: scikit-learn's 1,797
8x8 digits (the UCI "Optical Recognition of Handwritten Digits" set, 43 writers), each
saved as a PNG and classified by ``jax-softmax predict``, as a user's own images are.

    .venv/bin/python scripts/other_digits.py RUN/params.npz DESKEWED_RUN/params.npz ...

Prints, for each checkpoint, the accuracy over all the digits and per class.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SCALE = 8  # each 8x8 digit drawn 64x64, a size a phone's crop of one digit might have


def write_digits(directory: Path) -> tuple[list[Path], np.ndarray]:
    """The digits as dark-on-light PNGs (as written on paper); returns the paths and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths = []
    for k, image in enumerate(digits.images):
        levels = np.uint8(255 - np.round(image / 16 * 255))  # ink 0-16 -> dark on white
        path = directory / f"digit{k:04d}.png"
        Image.fromarray(levels).resize((8 * SCALE, 8 * SCALE), Image.Resampling.BILINEAR).save(path)
        paths.append(path)
    return paths, digits.target


def predict(params: str, paths: list[Path]) -> np.ndarray:
    done = subprocess.run(
        [sys.executable, "-m", "jax_softmax", "predict", "--params", params, "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    return np.array([p["digit"] for p in json.loads(done.stdout)["predictions"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="+", help="checkpoints written by train --out or solve --out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = write_digits(Path(tmp))
        print(f"{len(paths)} digits of scikit-learn's load_digits, {8 * SCALE}x{8 * SCALE} PNGs")
        print("| checkpoint | deskew | accuracy | " + " | ".join(map(str, range(10))) + " |")
        print("| --- | --- | --- | " + " | ".join(["---"] * 10) + " |")
        for params in args.params:
            from jax_softmax.runs.checkpoint import read_checkpoint

            deskew = "deskew" in read_checkpoint(params)[2].get("preprocessing", [])
            right = predict(params, paths) == labels
            per_class = " | ".join(f"{100 * right[labels == k].mean():.0f}%" for k in range(10))
            print(f"| {params} | {'yes' if deskew else 'no'} | {100 * right.mean():.2f}% | {per_class} |")


if __name__ == "__main__":
    main()
