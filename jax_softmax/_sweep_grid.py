"""A sweep's defaults and grids: the settings the command line reads without importing JAX."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

SelectBy = Literal["accuracy", "loss"]
SELECT_BY: tuple[str, ...] = ("accuracy", "loss")

# The default sweep: Adam around its usual learning rate, with and without a little L2.
# In 15 epochs Adam gets closer to the regularised optimum than plain SGD at a constant
# learning rate, whose step noise keeps it about 0.2 points of test accuracy lower.
DEFAULT_SWEEP_OPTIMIZER = "adam"
DEFAULT_SWEEP_LRS: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
DEFAULT_SWEEP_L2S: tuple[float, ...] = (0.0, 3e-5, 1e-4)
DEFAULT_SWEEP_SEEDS: tuple[int, ...] = (0,)
DEFAULT_SWEEP_BATCH_SIZES: tuple[int, ...] = (100,)
DEFAULT_SWEEP_EPOCHS = 15


def log_range(start: float, stop: float, num: int) -> tuple[float, ...]:
    """``num`` values spaced evenly on a log scale from ``start`` to ``stop``, both included.

    Raises:
      ValueError: for a bound that is not finite and > 0, or ``num < 1``.

    >>> log_range(0.01, 1, 3)
    (0.01, 0.1, 1.0)
    """
    if not (math.isfinite(start) and math.isfinite(stop) and start > 0 and stop > 0):
        raise ValueError(f"a log-spaced range needs finite bounds > 0, got {start!r} and {stop!r}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"a log-spaced range needs a number of values >= 1, got {num!r}")
    if num == 1:
        return (float(start),)
    values = np.geomspace(start, stop, num)
    # Round away the last bits of exp(log(...)) so that 0.01..1 gives 0.1, not 0.09999999999999999.
    return tuple(float(f"{v:.12g}") for v in values)


def parse_grid(text: str, name: str, *, positive: bool = False) -> tuple[float, ...]:
    """Parses a comma-separated list of numbers and log-spaced ranges ``START:STOP:NUM``.

    Args:
      text: for example ``"0.01,0.03,0.1"``, ``"1e-3:1:4"`` (0.001, 0.01, 0.1, 1) or
        ``"0,1e-5:1e-3:3"`` (0, 1e-5, 1e-4, 1e-3).
      name: the grid's name, for error messages.
      positive: whether the values must be > 0 (else >= 0).

    Returns:
      The values, in the order written.

    Raises:
      ValueError: naming ``name``, for an item that is neither, a value that is not
        finite, negative (or 0 when ``positive``), or a value written twice.

    >>> parse_grid("0,1e-4:1e-2:3", "l2")
    (0.0, 0.0001, 0.001, 0.01)
    """
    values: list[float] = []
    for item in text.split(","):
        item = item.strip()
        parts = item.split(":")
        try:
            if len(parts) == 1:
                values.append(float(item))
            elif len(parts) == 3:
                values.extend(log_range(float(parts[0]), float(parts[1]), int(parts[2])))
            else:
                raise ValueError("expected a number or START:STOP:NUM")
        except ValueError as e:
            raise ValueError(f"{name}: cannot read {item!r} ({e})") from None
    return check_grid(name, values, positive=positive)


def check_grid(name: str, values: Sequence[float], *, positive: bool) -> tuple[float, ...]:
    """``values`` as floats; a ValueError naming ``name`` if empty, repeated, not finite or too small."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError(f"{name} must hold at least one value, got none")
    for v in values:
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"{name} must hold finite numbers {bound}, got {v!r}")
    check_distinct(name, values)
    return values


def check_distinct(name: str, values: Sequence) -> None:
    """A ValueError naming ``name`` for a value that ``values`` holds twice."""
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{name} must not repeat a value, got {v!r} twice")
        seen.add(v)
