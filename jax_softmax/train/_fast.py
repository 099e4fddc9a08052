"""What makes an epoch fast on a CPU, each measured in ``docs/speed.md``: XLA's options, the
shuffle, and compiled programs kept between runs."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jax_softmax.storage import compiled_program

CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA options for the training epoch on a CPU.

XLA's CPU backend hands float32 matrix products to YNNPACK by default; for this
model's forward product, ``[batch, 784] x [784, 10]``, XLA's own Eigen kernel is
faster: 7-11% less per epoch at batch 200 on the x86-64 (AVX2) CPU measured.
"""


SETUP_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
"""XLA options for :func:`fit`'s set-up program on a CPU.

The set-up runs once, and drawing the initial weights makes it the slowest program of
a run to compile: 0.9 s at LLVM's default optimization, 0.15 s at level 1, which gives
the same bits (level 0 does not).
"""


def compile_with(
    lowered: jax.stages.Lowered, options: dict | None = CPU_COMPILER_OPTIONS
) -> jax.stages.Compiled:
    """Compiles with ``options`` on a CPU; without them elsewhere or where unknown."""
    if options is None or jax.default_backend() != "cpu":
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=options)
    except jax.errors.JaxRuntimeError as e:
        if "No such compile option" not in str(e):
            raise
        return lowered.compile()


def program(name: str, jitted, args: tuple, settings: dict | None, options: dict | None, **static):
    """``jitted.lower(*args, **static)`` compiled (with ``options`` on a CPU), or the same program
    kept by an earlier run.

    ``settings`` names what the program depends on besides its arguments and this
    package's code (``None``: not nameable, never kept); see
    :mod:`jax_softmax.storage._programs`.
    """
    if settings is not None:
        settings = {**settings, "compiler_options": options if jax.default_backend() == "cpu" else None}
    return compiled_program(name, jitted, args, static, settings, partial(compile_with, options=options))


def stable_argsort_uint32(keys: jax.Array) -> jax.Array:
    """Indices that sort ``keys`` (uint32 ``[n]``), ties in their original order.

    On XLA's CPU backend ``lax.sort_key_val`` takes about 30 ms for 54,000 keys, a
    sort of one uint32 array about 3 ms. So this is a least-significant-digit radix
    sort made of single-array sorts: each pass packs one digit of the key above the
    element's current position into one uint32 and sorts that. The position breaks
    ties, which makes every pass stable, so the passes compose into a stable sort by
    the whole key.
    """
    n = keys.shape[0]
    position_bits = max(1, (n - 1).bit_length())
    digit_bits = 32 - position_bits
    position_mask = (1 << position_bits) - 1
    positions = jnp.arange(n, dtype=jnp.uint32)
    order = None
    for shift in range(0, 32, digit_bits):
        digits = (keys if order is None else keys[order]) >> shift
        digits = digits & ((1 << digit_bits) - 1) if shift + digit_bits < 32 else digits
        ranks = (jnp.sort((digits << position_bits) | positions) & position_mask).astype(jnp.int32)
        order = ranks if order is None else order[ranks]
    return order


def shuffled_indices(key: jax.Array, n: int) -> jax.Array:
    """The permutation of ``range(n)`` that ``jax.random.permutation(key, n)`` returns.

    The same algorithm (rounds of sorting by fresh random 32-bit keys) and the same
    result, with the key-value sort replaced by :func:`stable_argsort_uint32`:
    about three times faster on a CPU for MNIST's 54,000 examples. Above 2**24
    elements, where the radix sort needs many passes, it is
    ``jax.random.permutation`` itself.

    Args:
      key: a PRNG key.
      n: the number of elements, a static integer >= 1.

    Returns:
      ``[n]`` int32 indices.
    """
    if n > 1 << 24:
        return jax.random.permutation(key, n)
    # jax.random.permutation's number of rounds, from its heuristic stop criterion.
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    indices = jnp.arange(n, dtype=jnp.int32)
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        indices = indices[stable_argsort_uint32(jax.random.bits(subkey, (n,), jnp.uint32))]
    return indices
