"""The ``solve`` measurement: time to the L2-regularised optimum on MNIST, against scikit-learn.

MNIST's 54,000 training images (pixels / 255), scikit-learn's ``C`` (``l2 = 1 / (C n)``
in this project's mean form). Each case runs once, side by side in one process on the
same cores: this project's ``solve`` (Newton-CG and L-BFGS, float64 and float32, at each
tolerance; first call with its compilation, then again compiled) and scikit-learn's
``newton-cg`` and ``lbfgs`` at each tolerance; and, for scale, ``fit``'s default SGD and
Adam at 1e-3, 20 epochs each, measured on the same objective. Every objective is evaluated again in
float64 from the returned parameters, and compared with the lowest objective of the run
(scikit-learn's ``newton-cg`` at ``tol=1e-8`` reaches it): a case *reaches the optimum*
when it ends within ``--gap`` (relative, default 1e-7) of it.
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np

OURS_TOLS = {"float64": (1e-5, 1e-6, 1e-8), "float32": (1e-4, 1e-5)}
SKLEARN_TOLS = {"newton-cg": (1e-4, 1e-6, 1e-8), "lbfgs": (1e-4, 1e-6, 1e-8)}


def objective64(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> float:
    """The mean loss in float64, in NumPy (a log-sum-exp with the largest logit taken out)."""
    z = x @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    nll = lse - z[np.arange(len(y)), y]
    return float(nll.mean() + 0.5 * l2 * np.sum(np.asarray(w, np.float64) ** 2))


def _ours(x, y, l2, method, dtype, tol, log, mnist) -> list[dict]:
    import jax_softmax as js
    from jax_softmax.diagnose.gradient_check import x64

    rows = []
    with x64():
        data = jax.device_put(np.asarray(x, dtype))
        labels = jax.device_put(y)
        for attempt in ("first call", "compiled"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = js.solve(data, labels, l2, method=method, tol=tol, max_iter=5000)
            jax.block_until_ready(result.params)
            seconds = time.perf_counter() - start
            w, b = np.asarray(result.params.w), np.asarray(result.params.b)
            rows.append(
                {
                    "solver": f"jax-softmax {method}",
                    "dtype": dtype,
                    "tol": tol,
                    "run": attempt,
                    "seconds": seconds,
                    "iterations": result.iterations,
                    "objective": objective64(w, b, x, y, l2),
                    "converged": result.converged,
                    "test_accuracy": test_accuracy(w, b, mnist),
                }
            )
            log(f"{rows[-1]['solver']} {dtype} tol={tol:g} {attempt}: {seconds:.2f} s")
    return rows


def _sklearn(x, y, c, solver, tol, log, mnist) -> dict:
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=c, solver=solver, tol=tol, max_iter=10_000).fit(x, y)
    seconds = time.perf_counter() - start
    log(f"scikit-learn {solver} tol={tol:g}: {seconds:.2f} s")
    return {
        "solver": f"scikit-learn {solver}",
        "dtype": "float64",
        "tol": tol,
        "run": "fit",
        "seconds": seconds,
        "iterations": int(model.n_iter_[0]),
        "objective": objective64(model.coef_.T, model.intercept_, x, y, 1.0 / (c * len(x))),
        "converged": None,
        "test_accuracy": test_accuracy(model.coef_.T, model.intercept_, mnist),
    }


def trained(mnist, l2: float, log) -> list[dict]:
    """``fit``'s default SGD run and Adam at 1e-3, 20 epochs each, as rows measured on the
    same objective: how far training for a fixed number of epochs ends from the optimum."""
    import jax_softmax as js

    x, y = np.asarray(mnist.train.x, np.float64), np.asarray(mnist.train.y)
    rows = []
    for name, settings in (
        ("train, SGD lr 0.5", {}),
        ("train, Adam lr 1e-3", {"optimizer": "adam", "lr": 1e-3}),
    ):
        config = js.TrainConfig(epochs=20, **settings)
        start = time.perf_counter()
        params, _ = js.fit(mnist.train, mnist.validation, config)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        w, b = np.asarray(params.w), np.asarray(params.b)
        rows.append(
            {
                "solver": f"{name}, {config.epochs} epochs",
                "dtype": "float32",
                "tol": None,
                "run": "fit",
                "seconds": seconds,
                "iterations": config.epochs,
                "objective": objective64(w, b, x, y, l2),
                "converged": None,
                "test_accuracy": test_accuracy(w, b, mnist),
            }
        )
        log(f"{rows[-1]['solver']}: {seconds:.2f} s")
    return rows


def test_accuracy(w: np.ndarray, b: np.ndarray, mnist) -> float:
    logits = np.asarray(mnist.test.x, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(mnist.test.y)))


def measure(args, report: dict, log) -> None:
    import jax_softmax as js

    mnist = js.load_mnist(args.data_dir)
    x = np.asarray(mnist.train.x, np.float64)
    y = np.asarray(mnist.train.y)
    c = args.C
    l2 = 1.0 / (c * len(x))
    rows = trained(mnist, l2, log)
    for dtype in args.solve_dtypes:
        for method in args.methods:
            for tol in OURS_TOLS[dtype]:
                rows += _ours(x, y, l2, method, dtype, tol, log, mnist)
    if not args.skip_sklearn:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            report["solve_sklearn"] = "skipped: scikit-learn is not installed (pip install -e '.[bench]')"
        else:
            for solver, tols in SKLEARN_TOLS.items():
                rows += [_sklearn(x, y, c, solver, tol, log, mnist) for tol in tols]
    best = min(row["objective"] for row in rows)
    for row in rows:
        row["gap"] = (row["objective"] - best) / best
        row["reached"] = row["gap"] <= args.gap
    report["solve"] = {
        "C": c,
        "l2": l2,
        "best_objective": best,
        "gap_target": args.gap,
        "device": str(jax.devices()[0]),
        "rows": rows,
    }


def markdown(report: dict) -> list[str]:
    solve = report["solve"]
    lines = [
        f"## Time to the optimum: MNIST, C={solve['C']:g} (l2={solve['l2']:.4g}), on {solve['device']}",
        "",
        f"Lowest objective of the run: {solve['best_objective']:.10f}; reached = within "
        f"{solve['gap_target']:g} of it.",
        "",
        "| solver | dtype | tol | run | seconds | iterations | objective | gap | reached | test accuracy |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in solve["rows"]:
        lines.append(
            f"| {r['solver']} | {r['dtype']} | {'' if r['tol'] is None else format(r['tol'], 'g')} | "
            f"{r['run']} | {r['seconds']:.2f} | {r['iterations']} | {r['objective']:.10f} | {r['gap']:.1e} | "
            f"{'yes' if r['reached'] else 'no'} | {r['test_accuracy']:.2%} |"
        )
    if "solve_sklearn" in report:
        lines += ["", report["solve_sklearn"]]
    lines += ["", *_fastest(solve["rows"])]
    return lines


def _fastest(rows: list[dict]) -> list[str]:
    reached = [r for r in rows if r["reached"] and r["run"] != "first call"]
    if not reached:
        return ["No case reached the optimum."]
    by_solver: dict[str, dict] = {}
    for r in reached:
        key = f"{r['solver']} ({r['dtype']})"
        if key not in by_solver or r["seconds"] < by_solver[key]["seconds"]:
            by_solver[key] = r
    fastest = sorted(by_solver.items(), key=lambda item: item[1]["seconds"])
    return ["Fastest to the optimum, per solver:", ""] + [
        f"- {key}: {r['seconds']:.2f} s (tol {r['tol']:g})" for key, r in fastest
    ]
