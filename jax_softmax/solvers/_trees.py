"""Vector arithmetic on :class:`~jax_softmax.Params`, as the solvers need it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_softmax.model import Params


def dot(a: Params, b: Params) -> jax.Array:
    """The inner product of two parameter vectors, over every entry of ``w`` and ``b``."""
    return jnp.sum(a.w * b.w) + jnp.sum(a.b * b.b)


def add_scaled(a: Params, scale: ArrayLike, b: Params) -> Params:
    """``a + scale * b``, in ``a``'s dtype."""
    return jax.tree.map(lambda u, v: (u + scale * v).astype(u.dtype), a, b)


def largest_entry(a: Params) -> jax.Array:
    """The largest absolute entry (scikit-learn's measure of a gradient's size)."""
    return jnp.maximum(jnp.max(jnp.abs(a.w)), jnp.max(jnp.abs(a.b)))
