"""The peers that `scripts/benchmark.py epochs` trains beside jax-softmax, each written the obvious way.

Every trainer solves the same problem: plain mini-batch SGD on the softmax
regression loss from zero weights, a fresh shuffle each epoch, the remainder batch
dropped, float32 throughout. Each returns a :class:`Run`: the seconds of every epoch
(training only) and the test accuracy after it, measured outside the timed part.

Only NumPy is imported here at the top, so a memory probe of one peer loads no other
framework; PyTorch, JAX and scikit-learn are imported by the trainers that use them.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Problem:
    """The data and settings every system trains on.

    Attributes:
      x: training inputs, float32 ``[n, 784]``.
      y: training labels, int32 ``[n]``.
      x_test: test inputs, float32 ``[m, 784]``.
      y_test: test labels, int32 ``[m]``.
      lr: learning rate.
      seed: seeds the shuffling.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    lr: float
    seed: int = 0

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1


@dataclasses.dataclass
class Run:
    """One training run: per-epoch seconds, test accuracies and (where kept) mean training losses."""

    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    test_accuracy: list[float] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    compile_seconds: float | None = None


def numpy_sgd(problem: Problem, batch_size: int, epochs: int) -> Run:
    """NumPy: fancy-index a batch, a stable softmax, its loss, the closed-form gradient, update in place."""
    x, y = problem.x, problem.y
    rng = np.random.default_rng(problem.seed)
    w = np.zeros((x.shape[1], problem.num_classes), np.float32)
    b = np.zeros(problem.num_classes, np.float32)
    lr = np.float32(problem.lr)
    num_batches = len(x) // batch_size
    rows = np.arange(batch_size)
    run = Run()
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        total_loss = 0.0
        for i in range(num_batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            z = xb @ w + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            total = p.sum(axis=1, keepdims=True)
            total_loss += float(np.mean(np.log(total[:, 0]) - z[rows, yb]))
            p /= total
            p[rows, yb] -= 1
            p /= np.float32(batch_size)
            w -= lr * (xb.T @ p)
            b -= lr * p.sum(axis=0)
        run.train_loss.append(total_loss / num_batches)
        run.epoch_seconds.append(time.perf_counter() - start)
        run.test_accuracy.append(float(np.mean(np.argmax(problem.x_test @ w + b, axis=1) == problem.y_test)))
    return run


def torch_sgd(problem: Problem, batch_size: int, epochs: int) -> Run:
    """PyTorch on the CPU: ``nn.Linear``, ``CrossEntropyLoss``, ``optim.SGD``, tensors in memory."""
    import torch

    torch.manual_seed(problem.seed)
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y).long()
    x_test, y_test = torch.from_numpy(problem.x_test), torch.from_numpy(problem.y_test).long()
    model = torch.nn.Linear(x.shape[1], problem.num_classes)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=problem.lr)
    num_batches = len(x) // batch_size
    run = Run()
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(num_batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
        run.epoch_seconds.append(time.perf_counter() - start)
        with torch.no_grad():
            run.test_accuracy.append(float((model(x_test).argmax(dim=1) == y_test).float().mean()))
    return run


def jax_python_loop(problem: Problem, batch_size: int, epochs: int) -> Run:
    """JAX: a jitted ``jax.grad`` step called from a Python loop over NumPy batches."""
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        w, b = params
        log_p = jax.nn.log_softmax(x @ w + b, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=-1))

    @jax.jit
    def step(params, x, y, lr):
        grads = jax.grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads)

    @jax.jit
    def accuracy(params, x, y):
        w, b = params
        return jnp.mean(jnp.argmax(x @ w + b, axis=-1) == y)

    x, y = problem.x, problem.y
    rng = np.random.default_rng(problem.seed)
    params = (jnp.zeros((x.shape[1], problem.num_classes)), jnp.zeros(problem.num_classes))
    lr = np.float32(problem.lr)
    num_batches = len(x) // batch_size
    start = time.perf_counter()
    step = step.lower(params, x[:batch_size], y[:batch_size], lr).compile()
    run = Run(compile_seconds=time.perf_counter() - start)
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        for i in range(num_batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            params = step(params, x[idx], y[idx], lr)
        jax.block_until_ready(params)
        run.epoch_seconds.append(time.perf_counter() - start)
        run.test_accuracy.append(float(accuracy(params, problem.x_test, problem.y_test)))
    return run


def jax_softmax_fit(problem: Problem, batch_size: int, epochs: int, grad: str) -> Run:
    """This project: ``jax_softmax.fit`` from zero weights, the test set evaluated in its callback."""
    import jax.numpy as jnp

    import jax_softmax as js

    x_test, y_test = jnp.asarray(problem.x_test), jnp.asarray(problem.y_test)
    run = Run()

    def record(metrics, params) -> None:
        # metrics.seconds was measured before the callback: the evaluation is not timed.
        run.epoch_seconds.append(metrics.seconds)
        run.test_accuracy.append(float(js.evaluate(params, x_test, y_test)[1]))

    _, history = js.fit(
        (problem.x, problem.y),
        epochs=epochs,
        batch_size=batch_size,
        lr=problem.lr,
        grad=grad,
        init_scale=0.0,
        seed=problem.seed,
        num_classes=problem.num_classes,
        callback=record,
    )
    run.compile_seconds = history.compile_seconds
    return run


def sklearn_logistic_regression(problem: Problem, max_iter: int = 200) -> tuple[float, float, int]:
    """scikit-learn's ``LogisticRegression`` (lbfgs) to convergence or ``max_iter`` iterations.

    Returns:
      ``(seconds, test_accuracy, iterations)``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=max_iter)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(problem.x, problem.y)
    seconds = time.perf_counter() - start
    return seconds, float(model.score(problem.x_test, problem.y_test)), int(np.max(model.n_iter_))


def xla_matmul_floor(problem: Problem, batch_size: int, epochs: int) -> Run:
    """The epoch's matrix products alone, as the project's SGD step computes them, in one XLA scan.

    Per step ``z = x_b w^T`` (``[batch, classes]``) and ``g = z^T x_b``
    (``[classes, features]``) on contiguous batches: no gather, softmax or shuffle.
    Compiled with the project's CPU options.
    """
    import jax
    import jax.numpy as jnp

    num_batches = len(problem.x) // batch_size

    @jax.jit
    def epoch(w_t, x):
        def step(w_t, i):
            xb = jax.lax.dynamic_slice_in_dim(x, i * batch_size, batch_size)
            z = jnp.matmul(xb, w_t.T, precision=jax.lax.Precision.HIGHEST)
            return w_t - 1e-9 * jnp.matmul(z.T, xb, precision=jax.lax.Precision.HIGHEST), None

        return jax.lax.scan(step, w_t, jnp.arange(num_batches))[0]

    from jax_softmax.train import CPU_COMPILER_OPTIONS

    x = jnp.asarray(problem.x)
    w_t = jnp.zeros((problem.num_classes, x.shape[1]))
    start = time.perf_counter()
    epoch = epoch.lower(w_t, x).compile(compiler_options=CPU_COMPILER_OPTIONS)
    run = Run(compile_seconds=time.perf_counter() - start)
    for _ in range(epochs):
        start = time.perf_counter()
        w_t = jax.block_until_ready(epoch(w_t, x))
        run.epoch_seconds.append(time.perf_counter() - start)
    return run


def numpy_matmul_floor(problem: Problem, batch_size: int, epochs: int) -> Run:
    """The same products through NumPy's BLAS, on contiguous batches."""
    x = problem.x
    w = np.zeros((x.shape[1], problem.num_classes), np.float32)
    num_batches = len(x) // batch_size
    run = Run()
    for _ in range(epochs):
        start = time.perf_counter()
        for i in range(num_batches):
            xb = x[i * batch_size : (i + 1) * batch_size]
            z = xb @ w
            w -= np.float32(1e-9) * (xb.T @ z)
        run.epoch_seconds.append(time.perf_counter() - start)
    return run
