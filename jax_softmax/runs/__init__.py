"""A training run's directory: checkpoints, per-epoch metrics, the lock, pictures, and resuming.

- :mod:`~jax_softmax.runs.checkpoint`: parameters and metadata in one ``.npz`` file.
- ``_directory``: the run directory: its lock, its metrics log and its pictures.
- ``_resume``: a stopped run continued from its directory.
- ``_train_run``: :func:`train_run`, a whole run: locked, trained with every epoch
  saved, resumable, pictured.
"""

from jax_softmax.runs._directory import (
    IMAGE_SHAPE,
    METRICS_FILE,
    OPT_STATE_FILE,
    PARAMS_FILE,
    RUN_FILES,
    RunExistsError,
    RunInUseError,
    RunLock,
    RunWriteError,
    append_metrics,
    cut_metrics,
    epoch_writer,
    lock_run,
    make_run_dir,
    read_metrics,
    remove_temp_files,
    run_metadata,
    start_run,
    write_plots,
)
from jax_softmax.runs._resume import (
    ResumeError,
    RunState,
    check_same_data,
    load_run,
    merge_flags,
    read_opt_state,
    read_run_metadata,
)
from jax_softmax.runs._train_run import Progress, RunInterrupted, RunResult, train_run
from jax_softmax.runs.checkpoint import (
    PIXEL_DIVISOR,
    PREPROCESSING,
    Checkpoint,
    CheckpointError,
    check_pixel_scaling,
    check_preprocessing,
    load_params,
    save_params,
)

__all__ = [
    "train_run",
    "RunResult",
    "Progress",
    "RunInterrupted",
    "save_params",
    "load_params",
    "Checkpoint",
    "CheckpointError",
    "start_run",
    "make_run_dir",
    "lock_run",
    "RunLock",
    "remove_temp_files",
    "append_metrics",
    "read_metrics",
    "cut_metrics",
    "epoch_writer",
    "run_metadata",
    "check_pixel_scaling",
    "check_preprocessing",
    "write_plots",
    "RunExistsError",
    "RunInUseError",
    "RunWriteError",
    "read_run_metadata",
    "merge_flags",
    "check_same_data",
    "load_run",
    "read_opt_state",
    "RunState",
    "ResumeError",
    "PARAMS_FILE",
    "METRICS_FILE",
    "OPT_STATE_FILE",
    "RUN_FILES",
    "IMAGE_SHAPE",
    "PIXEL_DIVISOR",
    "PREPROCESSING",
]
