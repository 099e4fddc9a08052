"""A hand-written gradient's verdict: its shape against ``jax.grad``'s at each point, named."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

VERDICTS: tuple[str, ...] = ("correct", "negated", "scaled", "transposed", "bias", "wrong")


@dataclasses.dataclass(frozen=True)
class PointCheck:
    """The comparison at one point.

    Attributes:
      batch_size: examples in the batch.
      weights: ``"zero"`` or ``"random"`` (logits of standard deviation about 5).
      relative_error_w: ``||dw - grad_w|| / ||grad_w||`` (Frobenius norms; ``dw``
        transposed back when it came back ``[num_classes, num_features]``).
      relative_error_b: the same for ``db``; ``None`` when ``db`` is missing.
      factor: the ``c`` that makes ``c * grad`` closest to ``(dw, db)``, when it fits to
        the tolerance (else ``None``).
      factor_w: the same for ``dw`` alone.
      largest_difference: where ``|fn - jax.grad|`` is largest: ``("w", i, k)`` or ``("b", k)``,
        with the two values, ``(where, value, expected)``.
    """

    batch_size: int
    weights: str
    relative_error_w: float
    relative_error_b: float | None
    factor: float | None
    factor_w: float | None
    largest_difference: tuple[tuple[int | str, ...], float, float]


def largest_difference(uw, ub, gw, gb) -> tuple[tuple[int | str, ...], float, float]:
    dw = np.abs(uw - gw)
    i, k = np.unravel_index(int(np.argmax(dw)), dw.shape)
    best = (("w", int(i), int(k)), float(uw[i, k]), float(gw[i, k]))
    if ub is not None:
        kb = int(np.argmax(np.abs(ub - gb)))
        if abs(ub[kb] - gb[kb]) > dw[i, k]:
            best = (("b", kb), float(ub[kb]), float(gb[kb]))
    return best


def fit_multiple(u: np.ndarray, g: np.ndarray, tol: float) -> float | None:
    """The ``c`` with ``u`` closest to ``c * g``, when ``u`` is within ``tol`` of it (relatively)."""
    gg = float(g @ g)
    if gg == 0:
        return None
    c = float(u @ g) / gg
    if c == 0 or np.linalg.norm(u - c * g) > tol * abs(c) * math.sqrt(gg):
        return None
    return c


def relative_difference(u: np.ndarray, g: np.ndarray) -> float:
    return float(np.linalg.norm(u - g) / max(np.linalg.norm(g), np.finfo(np.float64).tiny))


def point_check(n: int, label: str, uw, ub, gw, gb, tol: float) -> PointCheck:
    """How one returned gradient compares with the true one."""
    u = uw.ravel() if ub is None else np.concatenate([uw.ravel(), ub])
    g = gw.ravel() if ub is None else np.concatenate([gw.ravel(), gb])
    return PointCheck(
        batch_size=n,
        weights=label,
        relative_error_w=relative_difference(uw, gw),
        relative_error_b=None if ub is None else relative_difference(ub, gb),
        factor=fit_multiple(u, g, tol),
        factor_w=fit_multiple(uw.ravel(), gw.ravel(), tol),
        largest_difference=largest_difference(uw, ub, gw, gb),
    )


def close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(abs(b), 1.0)


def factor_pattern(factors: list[float], sizes: list[int], tol: float) -> str | None:
    """What a multiple at every point amounts to, or ``None`` when it changes otherwise."""
    if all(close(c, -1.0, tol) for c in factors):
        return "negated"
    for sign, words in ((1, ""), (-1, ", and of the opposite sign, so that the update climbs the loss")):
        if len(set(sizes)) > 1 and all(close(c, sign * n, tol) for c, n in zip(factors, sizes, strict=True)):
            return "a sum over the batch instead of a mean" + words
        if len(set(sizes)) > 1 and all(close(c, sign / n, tol) for c, n in zip(factors, sizes, strict=True)):
            return "divided by the batch size twice" + words
    if all(close(c, factors[0], tol) for c in factors):
        return "a constant factor"
    return None


def where_it_differs(point: PointCheck, num_features: int) -> str:
    (kind, *index), value, expected = point.largest_difference
    if kind == "w":
        i, k = index
        pixel = f" (pixel row {i // 28}, column {i % 28})" if num_features == 784 else ""
        place = f"dw[{i}, {k}]{pixel}"
    else:
        place = f"db[{index[0]}]"
    return (
        f"the largest difference is in {place}, at a batch of {point.batch_size} with {point.weights} "
        f"weights: {value:.6g} where jax.grad gives {expected:.6g}"
    )


def classify(
    points: list[PointCheck], tol: float, transposed: bool, num_features: int, num_classes: int
) -> tuple[str, str]:
    """The verdict and its message from every point's comparison."""
    worst_w = max(p.relative_error_w for p in points)
    missing_b = any(p.relative_error_b is None for p in points)
    worst_b = None if missing_b else max(p.relative_error_b for p in points)
    sizes = [p.batch_size for p in points]
    tried = ", ".join(str(n) for n in dict.fromkeys(sizes))
    errors = f"largest relative error {worst_w:.3g} in dw" + (
        "" if worst_b is None else f", {worst_b:.3g} in db"
    )
    if worst_w <= tol and worst_b is not None and worst_b <= tol:
        if transposed:
            return "transposed", (
                f"dw comes back [{num_classes}, {num_features}]: it is the transpose of the gradient, "
                f"which is [{num_features}, {num_classes}] like w ({errors} once transposed back)"
            )
        return (
            "correct",
            f"within rounding of jax.grad at batch sizes {tried}, zero and random weights ({errors})",
        )
    shape_words = (
        f"; besides, dw comes back [{num_classes}, {num_features}] (transposed)" if transposed else ""
    )
    if worst_w <= tol:
        if missing_b:
            return "bias", f"dw is right ({errors}) but db is missing: return (dw, db){shape_words}"
        worst = max(points, key=lambda p: p.relative_error_b)
        return "bias", (
            f"dw is right but db is wrong: relative error {worst_b:.3g} in db; "
            f"{where_it_differs(worst, num_features)}{shape_words}"
        )
    factors = [p.factor for p in points]
    missing_words = "; db is missing" if missing_b else ""
    if all(c is not None for c in factors):
        pattern = factor_pattern(factors, sizes, tol)
        factor = factors[-1]
        if pattern == "negated" and not transposed:
            return "negated", (
                f"-1 times the gradient: w - lr * dw climbs the loss instead of descending it ({errors})"
                f"{missing_words}"
            )
        if pattern is not None and pattern != "negated" and not transposed:
            by_size = dict(zip(sizes, factors, strict=True))  # every point of a size has the same factor
            return "scaled", (
                f"{factor:.6g} times the gradient at a batch of {sizes[-1]}: {pattern} "
                f"(factors {', '.join(f'{c:.6g}' for c in by_size.values())} at batch sizes "
                f"{', '.join(str(n) for n in by_size)}){missing_words}"
            )
        if pattern is not None:  # transposed and a multiple: two mistakes, so "wrong", but say which
            return "wrong", (
                f"dw comes back [{num_classes}, {num_features}] (transposed), and transposed back "
                f"(dw, db) is {factor:.6g} times the gradient ({pattern}){missing_words}"
            )
    hints = []
    factors_w = [p.factor_w for p in points]
    if all(c is not None for c in factors_w):
        pattern = factor_pattern(factors_w, sizes, tol)
        if pattern is not None:
            hints.append(f"dw alone is {factors_w[-1]:.6g} times its gradient ({pattern})")
    worst = max(points, key=lambda p: p.relative_error_w)
    message = f"not a multiple of the gradient ({errors}); {where_it_differs(worst, num_features)}"
    return "wrong", "; ".join([message, *hints]) + shape_words + missing_words
