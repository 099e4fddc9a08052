"""L-BFGS from optax (``optax.lbfgs`` with its zoom line search), in one ``lax.while_loop``."""

from __future__ import annotations

import jax
from jax.typing import ArrayLike

from jax_softmax.gradients import value_grad_and_probs
from jax_softmax.model import PRECISION, Params
from jax_softmax.solvers._trees import largest_entry


def minimize(
    x: jax.Array, onehot: jax.Array, l2: ArrayLike, init: Params, tol: ArrayLike, max_iter: ArrayLike
) -> tuple[Params, jax.Array, Params, jax.Array]:
    """Minimises the loss from ``init``; returns ``(params, value, grad, iterations)``.

    Stops when the largest absolute gradient entry is at most ``tol`` or after
    ``max_iter`` iterations.
    """
    import optax  # here, not at the top: Newton-CG, the default, does without it
    import optax.tree_utils as otu

    def value_and_grad(params: Params) -> tuple[jax.Array, Params]:
        logits = jax.numpy.matmul(x, params.w, precision=PRECISION) + params.b[None, :]
        value, grad, _ = value_grad_and_probs(params, x, onehot, logits, l2)
        return value, grad

    def value_fn(params: Params) -> jax.Array:
        return value_and_grad(params)[0]

    optimizer = optax.lbfgs()

    def running(carry):
        _, _, grad, state = carry
        return (otu.tree_get(state, "count") < max_iter) & (largest_entry(grad) > tol)

    def iterate(carry):
        params, value, grad, state = carry
        updates, state = optimizer.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
        params = optax.apply_updates(params, updates)
        # The line search has evaluated the new point already; its state holds both.
        value, grad = otu.tree_get(state, "value"), otu.tree_get(state, "grad")
        return params, value, grad, state

    value, grad = value_and_grad(init)
    params, value, grad, state = jax.lax.while_loop(
        running, iterate, (init, value, grad, optimizer.init(init))
    )
    return params, value, grad, otu.tree_get(state, "count")
