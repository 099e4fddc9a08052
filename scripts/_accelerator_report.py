"""The accelerator check's report as Markdown: one table per part (scripts/accelerator_check.py)."""

from __future__ import annotations


def markdown(report: dict) -> str:
    """The report as Markdown tables, one per part; a failed or skipped part says so."""
    env = report["environment"]
    kinds = sorted({d["kind"] for d in env["devices"]})
    lines = [
        f"Devices: {len(env['devices'])} x {', '.join(kinds)} ({env['backend']}); JAX {env['jax']}, "
        f"jaxlib {env['jaxlib']}; {env['date_utc']} UTC.",
        "",
    ]
    for name, section in (
        ("gradients", _gradient_lines),
        ("epochs", _epoch_lines),
        ("train", _train_lines),
        ("sweep", _sweep_lines),
    ):
        part = report.get(name)
        if isinstance(part, dict) and ("error" in part or "skipped" in part):
            lines += [f"{name}: {part.get('error') or 'skipped: ' + part['skipped']}", ""]
        elif part is not None:
            lines += section(part) + [""]
    peaks = {d: v for d, v in report.get("peak_memory_bytes", {}).items() if v is not None}
    if peaks:
        lines += [
            "Peak device memory of the checking process: "
            + ", ".join(f"{d} {v / 2**20:,.0f} MiB" for d, v in peaks.items()),
            "",
        ]
    lines.append(f"Total: {report['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _gradient_lines(grads: dict) -> list[str]:
    lines = [
        f"Gradient tests (`pytest {grads['command'].split('pytest ', 1)[-1]}`): {grads['summary']}",
        "",
        "| device | largest relative error, float32 | float64 |",
        "| --- | --- | --- |",
    ]
    for device, errors in grads["max_relative_error"].items():
        lines.append(f"| {device} | {_sci(errors.get('float32'))} | {_sci(errors.get('float64'))} |")
    return lines


def _epoch_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| batch | grad | steps | ms / epoch | us / step | samples / s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        head = f"| {row['batch_size']} | {row['grad']} | {row['steps_per_epoch']} "
        if "skipped" in row:
            lines.append(head + f"| skipped: {row['skipped']} | | |")
        else:
            lines.append(
                head
                + f"| {row['ms_per_epoch']:.2f} | {row['us_per_step']:.1f} | {row['samples_per_s']:,.0f} |"
            )
    return lines


def _train_lines(rows: list[dict]) -> list[str]:
    lines = ["| `train` run | compilation cache | test accuracy | wall s | compile s | train s |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if "test_accuracy" in row:
            lines.append(
                f"| `{row['command']}` | {row['cache']} | {100 * row['test_accuracy']:.2f}% "
                f"| {row['wall_s']:.2f} | {row['compile_s']:.2f} | {row['train_s']:.2f} |"
            )
        else:
            failed = row.get("skipped") or f"failed, exit {row.get('exit_code')}"
            lines.append(f"| | {row['cache']} | {failed} | | | |")
    return lines


def _sweep_lines(sweep: dict) -> list[str]:
    lines = ["| models sharing batches | ms / epoch | models / s |", "| --- | --- | --- |"]
    for row in sweep["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['models']} | skipped: {row['skipped']} | |")
        else:
            lines.append(f"| {row['models']} | {row['ms_per_epoch']:.1f} | {row['models_per_s']:,.0f} |")
    if sweep["epoch_ratio_1024_to_1"] is not None:
        lines += ["", f"1,024-model epoch / 1-model epoch: {sweep['epoch_ratio_1024_to_1']:.2f}x"]
    return lines


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"
