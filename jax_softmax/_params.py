"""The parameters pytree, in a module of its own so that the argument checks can name it."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Params(NamedTuple):
    """Parameters of a softmax-regression model.

    Attributes:
      w: weights, ``[num_features, num_classes]``.
      b: biases, ``[num_classes]``.
    """

    w: jax.Array
    b: jax.Array
