"""``jax-softmax evaluate`` and ``predict``: a saved model on a split, or on images."""

from __future__ import annotations

import argparse
import json
import os
import sys

from jax_softmax.cli._common import (
    PROG,
    CommandError,
    add_data_flags,
    enable_dtype,
)


def _load_checkpoint(path: str):
    """Loads a checkpoint for evaluate and predict, switching on 64-bit JAX if it needs it.

    Returns:
      ``(checkpoint, deskew)``: whether the model was trained on deskewed images, which
      it is then fed too.
    """
    from jax_softmax.runs import check_pixel_scaling, check_preprocessing
    from jax_softmax.runs.checkpoint import read_checkpoint, to_checkpoint

    if not os.path.exists(path):
        raise CommandError(
            f"--params {path}: no such file; pass the checkpoint params.npz that "
            f"'{PROG} train --out DIR' writes in DIR"
        )
    w, b, metadata = read_checkpoint(path)  # once: the dtype says whether 64-bit JAX is needed
    enable_dtype(w.dtype.name)
    checkpoint = to_checkpoint(w, b, metadata, path)
    check_pixel_scaling(checkpoint.metadata, path)
    return checkpoint, "deskew" in check_preprocessing(checkpoint.metadata, path)


def _add_checkpoint_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        required=True,
        metavar="FILE",
        help="checkpoint written by 'train --out DIR': DIR/params.npz",
    )


def add_evaluate_command(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="measure a saved model on MNIST",
        description="Accuracy, mean negative log-likelihood, per-class precision and recall, "
        "and the confusion matrix of a saved model on an MNIST split.",
    )
    _add_checkpoint_flag(p)
    p.add_argument(
        "--split", choices=("test", "validation", "train"), default="test", help="which split (default test)"
    )
    add_data_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from jax_softmax.data import NUM_FEATURES, load_mnist
    from jax_softmax.evaluation import classification_report, format_report

    checkpoint, deskew = _load_checkpoint(args.params)
    if checkpoint.params.w.shape[0] != NUM_FEATURES:
        raise CommandError(
            f"{args.params}: the model takes {checkpoint.params.w.shape[0]} features, "
            f"MNIST images have {NUM_FEATURES}"
        )
    split = getattr(load_mnist(args.data_dir, deskew=deskew), args.split)
    report = classification_report(checkpoint.params, split.x, split.y)
    if args.json:
        print(json.dumps({"params": args.params, "split": args.split, "deskew": deskew, **report.to_json()}))
    else:
        print(f"{args.params} on the MNIST {args.split} set{', deskewed' if deskew else ''}")
        print(format_report(report))
    return 0


def add_predict_command(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify your own digit images",
        description="Classify images of handwritten digits (PNG or JPEG, any size, colour or grey, "
        "dark on light or light on dark), prepared the way MNIST was: cropped to the digit, "
        "scaled to fit 20x20, centred by centre of mass in 28x28. A .npy file of shape [784] "
        "or [n, 784] with values in [0, 1] is classified as it is.",
    )
    _add_checkpoint_flag(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, or .npy arrays of inputs")
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert the grey levels: auto does it when the background is light (default auto)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from jax_softmax.data.images import input_names, load_inputs
    from jax_softmax.evaluation import class_probabilities

    checkpoint, deskew = _load_checkpoint(args.params)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    # Each file on its own: one that cannot be read is reported, the others classified.
    names, rows, errors = [], [], []
    for path in args.inputs:
        try:
            x = load_inputs(path, num_features=checkpoint.params.w.shape[0], invert=invert)
        except (ValueError, TypeError, OSError) as e:
            message = str(e) if str(e).startswith(f"{path}:") else f"{path}: {e}"
            errors.append({"input": path, "error": message})
            continue
        names += input_names(path, len(x))
        rows.append(x)
    if rows:
        x = np.concatenate(rows)
        if deskew:  # as the model's training images were
            from jax_softmax.data import deskew as deskew_images

            x = np.asarray(deskew_images(x.astype(np.float32)), x.dtype)
        probabilities = np.asarray(class_probabilities(checkpoint.params, x), np.float64)
    else:
        probabilities = np.zeros((0, checkpoint.params.w.shape[1]))
    digits = probabilities.argmax(axis=1)
    if args.json:
        predictions = [
            {"input": name, "digit": int(digit), "probabilities": p.tolist()}
            for name, digit, p in zip(names, digits, probabilities, strict=True)
        ]
        result = {"params": args.params, "predictions": predictions}
        if errors:
            result["errors"] = errors
        print(json.dumps(result))
    else:
        for name, digit, p in zip(names, digits, probabilities, strict=True):
            top = np.argsort(-p, kind="stable")[:3]
            print(f"{name}: {digit}  ({', '.join(f'{k}: {100 * p[k]:.2f}%' for k in top)})")
    for error in errors:
        print(f"{PROG} predict: error: {error['error']}", file=sys.stderr)
    if errors and rows:
        print(
            f"{PROG} predict: {len(errors)} of {len(args.inputs)} files could not be classified",
            file=sys.stderr,
        )
    return 2 if errors else 0
