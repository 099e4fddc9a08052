"""TrainConfig: checked when made, recorded and read back by checkpoints and --resume."""

import dataclasses

import pytest

import jax_softmax as js
from jax_softmax.config import OPTIMIZER_NAMES, RECORDED, TrainConfig
from jax_softmax.gradients import OPTIMIZERS


def test_defaults_and_names():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.grad) == (20, 200, 0.5, "autodiff")
    assert OPTIMIZER_NAMES == ("sgd", *OPTIMIZERS)
    assert js.TrainConfig is TrainConfig
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"lr": 0.0}, "lr must be finite and > 0"),
        ({"lr": float("nan")}, "lr must be finite and > 0"),
        ({"l2": -1.0}, "l2 must be finite and >= 0"),
        ({"init_scale": float("inf")}, "init_scale must be finite and >= 0"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32 - 1\]"),
        ({"seed": 2**32}, r"seed must be an integer in \[0, 2\*\*32 - 1\]"),
        ({"seed": True}, r"seed must be an integer in \[0, 2\*\*32 - 1\]"),
        ({"grad": "numeric"}, "grad must be one of"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"on_nonfinite": "ignore"}, "on_nonfinite must be one of"),
        ({"devices": 0}, "devices must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused_when_made(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_replace_checks_names_and_values():
    config = TrainConfig().replace(lr=0.1, epochs=3)
    assert (config.lr, config.epochs) == (0.1, 3)
    with pytest.raises(TypeError, match="unknown training setting 'learning_rate'"):
        TrainConfig().replace(learning_rate=0.1)
    with pytest.raises(ValueError, match="lr must be finite"):
        TrainConfig().replace(lr=-1.0)


def test_recorded_round_trip():
    import numpy as np

    config = TrainConfig(lr=0.25, optimizer="adam", seed=np.int64(7), dtype=np.float32)
    recorded = config.recorded()
    assert list(recorded) == list(RECORDED) and recorded["dtype"] == "float32" and recorded["seed"] == 7
    assert TrainConfig.from_recorded(recorded) == config
    assert TrainConfig.from_recorded(recorded, epochs=30).epochs == 30
    with pytest.raises(ValueError, match="lack lr"):
        TrainConfig.from_recorded({k: v for k, v in recorded.items() if k != "lr"})


def test_an_optax_object_trains_but_is_not_recorded():
    from helpers import blobs

    optax = pytest.importorskip("optax")
    x, y = blobs(n=120)
    settings = {"epochs": 2, "batch_size": 40, "num_classes": 3, "lr": 0.1}
    config = TrainConfig(optimizer=optax.adam(0.1), **settings)
    params, history = js.fit((x, y), (x, y), config)
    named, _ = js.fit((x, y), (x, y), TrainConfig(optimizer="adam", **settings))
    assert len(history.epochs) == 2 and history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert (params.w == named.w).all()  # the object is the optimizer the name builds
    with pytest.raises(ValueError, match="cannot be recorded"):
        config.recorded()
    with pytest.raises(TypeError, match="optimizer must be a name or an optax"):
        TrainConfig(optimizer=42)


@pytest.mark.slow
def test_fit_takes_a_config_and_overrides():
    from helpers import blobs

    x, y = blobs(n=200)
    config = TrainConfig(epochs=2, batch_size=50, num_classes=3, lr=0.3)
    a, history = js.fit((x, y), None, config)
    b, _ = js.fit((x, y), epochs=2, batch_size=50, num_classes=3, lr=0.3)
    assert len(history.epochs) == 2
    assert (a.w == b.w).all()
    with pytest.raises(TypeError, match="unknown training setting 'epoch'"):
        js.fit((x, y), None, config, epoch=3)


def test_diagnose_config_checks_with_the_same_rules_and_keeps_plain_numbers():
    import json

    import numpy as np

    from jax_softmax.config import DiagnoseConfig

    config = DiagnoseConfig(batch_size=np.int64(50), lr=np.float32(0.5))
    assert json.dumps(dataclasses.asdict(config))  # NumPy scalars kept as Python numbers
    assert type(config.batch_size) is int and config.lr == 0.5
    for settings, error, message in (
        ({"lr": "0.1"}, TypeError, "lr must be a number, got '0.1'"),
        ({"init_scale": -1.0}, ValueError, "init_scale must be finite and >= 0"),
        ({"epochs": True}, ValueError, "epochs must be an integer >= 1, got True"),
        ({"num_classes": 1}, ValueError, "num_classes must be an integer >= 2"),
    ):
        with pytest.raises(error, match=message):
            DiagnoseConfig(**settings)


def test_a_choice_must_be_one_of_the_names():
    import numpy as np

    from jax_softmax.config import SOLVE_METHODS, check_choice

    check_choice("method", "lbfgs", SOLVE_METHODS)
    for bad in ("LBFGS", np.array("lbfgs"), None):
        with pytest.raises(ValueError, match=r"method must be one of \('newton-cg', 'lbfgs'\)"):
            check_choice("method", bad, SOLVE_METHODS)
