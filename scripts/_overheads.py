"""What the library's safety and breadth cost: the argument checks, the non-finite check, a sweep.

- ``checks``: a call of the jitted SGD step from ``make_update`` against
  ``step.__wrapped__``, the same compiled step without the argument checks (batch 200,
  784 x 10, float32), with the batch on the device and as NumPy arrays; median
  microseconds per call.
- ``nonfinite``: an epoch as ``fit`` runs it (a copy of the parameters and optimizer
  state, kept to replay an epoch that goes non-finite, then the jitted
  :func:`jax_softmax.train.checked_epoch`) against the jitted
  :func:`jax_softmax.train.train_epoch` alone; the median and fastest milliseconds per
  epoch, and the median of the rounds' paired ratios. Each timed call includes
  reading back what ``fit`` reads back.
- ``sweep-cost``: one model with ``fit``, a one-member ``sweep`` and 32-member sweeps
  (8 learning rates x 4 L2 strengths sharing one seed, hence every batch; and 32
  seeds, each with its own order of the examples), plain SGD at batch 200; seconds per
  epoch after the first, the fastest such epoch, the wall time of the whole call, and
  each one's ratio to the one-member sweep.
"""

from __future__ import annotations

import os
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from _timing import fastest, interleaved, median, paired_ratio

import jax_softmax as js
from jax_softmax.gradients import make_optimizer
from jax_softmax.sweeps import log_range
from jax_softmax.train import CPU_COMPILER_OPTIONS, checked_epoch, train_epoch
from jax_softmax.train.nonfinite import all_finite


def microseconds_per_call(step, params, x, y, lr: float, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        params = step(params, x, y, lr)
    jax.block_until_ready(params)
    return (time.perf_counter() - start) / calls * 1e6


def _time_steps(steps: dict, params, x, y, rounds: int, calls: int) -> dict[str, list[float]]:
    """Microseconds per call of each step, in interleaved rounds after a warm-up."""
    for step in steps.values():  # compile and warm up
        microseconds_per_call(step, params, x, y, 0.1, 10)
    cases = {
        name: (lambda _, step=step: microseconds_per_call(step, params, x, y, 0.1, calls))
        for name, step in steps.items()
    }
    return interleaved(cases, rounds)


def check_overhead(rounds: int, calls: int) -> dict:
    """Microseconds per call of the step with and without its argument checks."""
    rng = np.random.default_rng(0)
    x_host = rng.uniform(0, 1, (200, 784)).astype(np.float32)
    y_host = rng.integers(0, 10, 200).astype(np.int32)
    batches = {"device": (jnp.asarray(x_host), jnp.asarray(y_host)), "numpy": (x_host, y_host)}
    params = js.init_params(jax.random.key(0))
    rows = []
    for grad in ("autodiff", "manual"):
        step = js.make_update(grad)
        for kind, (x, y) in batches.items():
            times = _time_steps({"unchecked": step.__wrapped__, "checked": step}, params, x, y, rounds, calls)
            row = {"grad": grad, "batch": kind} | {f"{k}_us": median(v) for k, v in times.items()}
            rows.append(row | {"paired_ratio": paired_ratio(times["checked"], times["unchecked"])})
    return {"device": str(jax.devices()[0]), "rounds": rounds, "calls": calls, "rows": rows}


def check_overhead_markdown(report: dict) -> list[str]:
    c = report["checks"]
    lines = [
        f"device: {c['device']}; median of {c['rounds']} rounds of {c['calls']} calls",
        "| gradient | batch | unchecked us/call | checked us/call | overhead |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in c["rows"]:
        unchecked, checked = r["unchecked_us"], r["checked_us"]
        lines.append(
            f"| {r['grad']} | {r['batch']} | {unchecked:.1f} | {checked:.1f} | "
            f"{checked - unchecked:+.1f} us ({100 * (checked / unchecked - 1):+.1f}%) |"
        )
    return lines


def _compile_as_fit(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """With the CPU options ``fit`` compiles its epoch with, on a CPU."""
    if jax.default_backend() == "cpu":
        return lowered.compile(compiler_options=CPU_COMPILER_OPTIONS)
    return lowered.compile()


def _epoch_programs(grad: str, name: str, batch_size: int, x, y, lr) -> tuple[dict, tuple]:
    """The epoch without the check and with it, compiled as ``fit`` compiles them, and a start state."""
    optimizer = make_optimizer(name, 0.5 if name == "sgd" else 1e-3)
    settings = {"batch_size": batch_size, "grad": grad, "optimizer": optimizer, "l2": 0.0}
    params = js.init_params(jax.random.key(0))
    start = (params, () if optimizer is None else optimizer.init(params))
    programs = {
        kind: _compile_as_fit(jax.jit(partial(fn, **settings)).lower(*start, jax.random.key(0), x, y, lr))
        for kind, fn in (("without", train_epoch), ("with", checked_epoch))
    }
    return programs, start


def _time_epochs(programs: dict, start: tuple, x, y, lr, rounds: int) -> dict[str, list[float]]:
    """Seconds per epoch of each program, in interleaved rounds after one warm-up round."""
    state = dict.fromkeys(programs, start)
    keys = jax.random.split(jax.random.key(1), rounds + 1)

    def epoch(kind: str, round_: int) -> float:
        begin = time.perf_counter()
        if kind == "with":
            jax.tree.map(jnp.copy, state[kind])  # as fit keeps it
        out = programs[kind](*state[kind], keys[round_], x, y, lr)
        if kind == "with":
            bool(out[3])  # whether the epoch stayed finite, as fit reads it
        float(out[2])  # the mean loss, as fit reads it
        jax.block_until_ready(out[0])
        state[kind] = out[:2]
        return time.perf_counter() - begin

    return interleaved({kind: partial(epoch, kind) for kind in programs}, rounds, warmup=1)


def nonfinite_overhead(data_dir: str, rounds: int, batch_size: int, grads, optimizers) -> dict:
    """Milliseconds per epoch with and without the non-finite check, per gradient and optimizer."""
    data = js.load_mnist(data_dir)
    x, y = jnp.asarray(data.train.x), jnp.asarray(data.train.y, jnp.int32)
    lr = jnp.float32(0.5)
    rows = []
    for grad in grads:
        for name in optimizers:
            programs, start = _epoch_programs(grad, name, batch_size, x, y, lr)
            times = _time_epochs(programs, start, x, y, lr, rounds)
            rows.append(
                {
                    "grad": grad,
                    "optimizer": name,
                    "median_ms": [1e3 * median(times[k]) for k in ("without", "with")],
                    "fastest_ms": [1e3 * fastest(times[k]) for k in ("without", "with")],
                    "paired_ratio": paired_ratio(times["with"], times["without"]),
                }
            )
    return {
        "device": str(jax.devices()[0]),
        "batch_size": batch_size,
        "rounds": rounds,
        "rows": rows,
        "check_alone_us": _check_alone_microseconds(),
    }


def _check_alone_microseconds(calls: int = 2000) -> float:
    """The check's own work, alone: the copy fit keeps, and the test of the final state."""
    params = js.init_params(jax.random.key(0))
    test = jax.jit(lambda p, loss: jnp.isfinite(loss) & all_finite(p))
    bool(test(params, jnp.float32(1.0)))
    start = time.perf_counter()
    for _ in range(calls):
        jax.tree.map(jnp.copy, params)
        bool(test(params, jnp.float32(1.0)))
    return 1e6 * (time.perf_counter() - start) / calls


def nonfinite_markdown(report: dict) -> list[str]:
    n = report["nonfinite"]
    lines = [
        f"device: {n['device']}; batch {n['batch_size']}, float32; median of {n['rounds']} epochs",
        "| gradient | optimizer | median ms, without / with check | overhead | fastest ms | overhead "
        "| median of the rounds' ratios |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in n["rows"]:
        cells = [
            f"{a:.1f} / {b:.1f} | {100 * (b / a - 1):+.1f}%" for a, b in (r["median_ms"], r["fastest_ms"])
        ]
        paired = f"{100 * (r['paired_ratio'] - 1):+.1f}%"
        lines.append(f"| {r['grad']} | {r['optimizer']} | {cells[0]} | {cells[1]} | {paired} |")
    lines.append(
        f"copy and test of 784 x 10 float32 parameters, alone: {n['check_alone_us']:.0f} us per epoch"
    )
    return lines


LRS = log_range(0.05, 2.0, 8)
L2S = (0.0, 1e-5, 1e-4, 1e-3)
ONE_MEMBER = "sweep, 1 model"


def time_fit(data, epochs: int) -> tuple[list[float], float]:
    start = time.perf_counter()
    _, history = js.fit(data.train, data.validation, epochs=epochs, batch_size=200, lr=0.5)
    return [m.seconds for m in history.epochs[1:]], time.perf_counter() - start


def time_sweep(data, epochs: int, **grid) -> tuple[list[float], float]:
    seconds: list[float] = []
    start = time.perf_counter()
    js.sweep(
        data.train,
        data.validation,
        batch_sizes=(200,),
        epochs=epochs,
        optimizer="sgd",
        callback=lambda batch_size, epoch, s: seconds.append(s),
        **grid,
    )
    return seconds[1:], time.perf_counter() - start


def sweep_cost(data_dir: str, epochs: int, rounds: int) -> dict:
    """Seconds per epoch and per call of a fit, a one-member sweep and two 32-member sweeps."""
    data = js.load_mnist(data_dir)
    one = {"lrs": (0.5,), "l2s": (0.0,)}
    cases = {
        "fit, 1 model": lambda _: time_fit(data, epochs),
        ONE_MEMBER: lambda _: time_sweep(data, epochs, **one, seeds=(0,)),
        "sweep, 8 lr x 4 l2, 1 seed": lambda _: time_sweep(data, epochs, lrs=LRS, l2s=L2S, seeds=(0,)),
        "sweep, 1 lr, 32 seeds": lambda _: time_sweep(data, epochs, **one, seeds=range(32)),
    }
    results = interleaved(cases, rounds)
    rows = []
    for name, runs in results.items():
        per_epoch = [s for epoch_seconds, _ in runs for s in epoch_seconds]
        rows.append(
            {
                "case": name,
                "s_per_epoch": median(per_epoch),
                "fastest_s_per_epoch": fastest(per_epoch),
                "wall_s": median(wall for _, wall in runs),
            }
        )
    base = next(r for r in rows if r["case"] == ONE_MEMBER)
    for row in rows:
        for key in ("s_per_epoch", "fastest_s_per_epoch", "wall_s"):
            row[f"{key}_ratio"] = row[key] / base[key]
    platform = jax.devices()[0].platform
    return {"platform": platform, "cpus": os.cpu_count(), "epochs": epochs, "rounds": rounds, "rows": rows}


def sweep_cost_markdown(report: dict) -> list[str]:
    s = report["sweep_cost"]
    lines = [
        f"{s['platform']}, {s['cpus']} CPUs, batch 200, {s['epochs']} epochs, median of {s['rounds']} rounds",
        f"{'case':<28} {'s/epoch':>8} {'ratio':>6} {'fastest':>8} {'ratio':>6} {'wall s':>7} {'ratio':>6}",
    ]
    for r in s["rows"]:
        lines.append(
            f"{r['case']:<28} {r['s_per_epoch']:8.3f} {r['s_per_epoch_ratio']:6.2f} "
            f"{r['fastest_s_per_epoch']:8.3f} {r['fastest_s_per_epoch_ratio']:6.2f} "
            f"{r['wall_s']:7.2f} {r['wall_s_ratio']:6.2f}"
        )
    return lines
