"""``deskew``: js.deskew on MNIST's 70,000 images against a per-image SciPy loop.

Our function runs once compiled, on float32 pixels in [0, 1] already on the device
(``js.deskew``) and on uint8 pixels from the host to uint8 (``deskew_pixels``, what a
run's cache holds); the reference deskews each image with one
``scipy.ndimage.affine_transform`` (the same map, bilinear, ``mode="grid-constant"``).
Interleaved rounds; the SciPy loop, which takes seconds, once per round.
"""

from __future__ import annotations

import time

import numpy as np
from _timing import fastest, interleaved, median, paired_ratio


def scipy_deskew(image: np.ndarray) -> np.ndarray:
    """The reference: the image's moments in float64, then one affine_transform."""
    from scipy import ndimage

    r, c = np.mgrid[:28, :28]
    m = image.sum()
    if m <= 0:
        return image.copy()
    mr, mc = (r * image).sum() / m, (c * image).sum() / m
    var_r = ((r - mr) ** 2 * image).sum() / m
    cov = ((r - mr) * (c - mc) * image).sum() / m
    alpha = cov / var_r if var_r > 0 else 0.0
    affine = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([mr, mc]) - affine @ np.array([13.5, 13.5])
    return ndimage.affine_transform(image, affine, offset=offset, order=1, mode="grid-constant")


def _images(data_dir) -> np.ndarray:
    from jax_softmax.data import read_mnist_dir

    arrays = read_mnist_dir(data_dir)
    return np.concatenate([arrays["train_images"], arrays["test_images"]])


def measure(args, report: dict, log) -> None:
    import importlib.util

    import jax

    from jax_softmax.data import deskew, deskew_pixels

    raw = _images(args.data_dir)
    scaled = jax.device_put(raw.astype(np.float32) / 255)
    start = time.perf_counter()
    deskewed = np.asarray(jax.block_until_ready(deskew(scaled)))
    compile_seconds = time.perf_counter() - start
    cases = {
        "js.deskew (float32 on the device)": lambda _: jax.block_until_ready(deskew(scaled)),
        "deskew_pixels (uint8 to uint8)": lambda _: deskew_pixels(raw),
    }
    have_scipy = importlib.util.find_spec("scipy") is not None
    if have_scipy:
        floats = raw.astype(np.float32) / 255
        cases["SciPy, one affine_transform per image"] = lambda _: [scipy_deskew(im) for im in floats]
    rounds = args.rounds or 3

    def report_round(round_: int, name: str, seconds: float) -> None:
        log(f"deskew round {round_ + 1}/{rounds}: {name} {seconds:.3f} s")

    seconds = interleaved({name: _timed(case) for name, case in cases.items()}, rounds, log=report_round)
    ours = seconds[next(iter(cases))]
    rows = [
        {"case": name, "median": median(v), "min": fastest(v), "ratio_to_js_deskew": paired_ratio(v, ours)}
        for name, v in seconds.items()
    ]
    report["deskew"] = {
        "images": int(len(raw)),
        "compile_seconds": compile_seconds,
        "rows": rows,
        "scipy": None if have_scipy else "scipy is not installed (pip install -e '.[bench]')",
        "largest_difference_to_scipy": _largest_difference(deskewed, raw) if have_scipy else None,
        "backend": jax.default_backend(),
    }


def _timed(case):
    def run(round_index: int) -> float:
        start = time.perf_counter()
        case(round_index)
        return time.perf_counter() - start

    return run


def _largest_difference(ours: np.ndarray, raw: np.ndarray, count: int = 2000) -> float:
    """The largest difference to the SciPy reference over the first ``count`` images."""
    floats = raw[:count].astype(np.float32) / 255
    reference = np.stack([scipy_deskew(im) for im in floats])
    return float(np.abs(ours[:count] - reference).max())


def markdown(report: dict) -> list[str]:
    result = report["deskew"]
    lines = [
        f"### Deskewing MNIST's {result['images']:,} images ({result['backend']})",
        "",
        f"Compiling js.deskew: {result['compile_seconds']:.2f} s.",
        "",
        "| case | median s | fastest s | ratio to js.deskew |",
        "| --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['case']} | {row['median']:.3f} | {row['min']:.3f} | {row['ratio_to_js_deskew']:.1f}x |"
        )
    if result["scipy"] is not None:
        lines += ["", f"SciPy skipped: {result['scipy']}."]
    else:
        lines += [
            "",
            f"Largest difference to SciPy (2,000 images): {result['largest_difference_to_scipy']:.1e}.",
        ]
    return lines
