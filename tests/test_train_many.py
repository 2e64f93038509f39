"""Training several models at once: the same weights as alone, honest progress, cancel and failure."""

import pytest
import torch
import torch.nn as nn

from trend_core.config.specs import ModelSpec
from trend_core.models.zoo import Zoo
from trend_core.training import many as tm
from trend_core.training.train import TrainingCancelled, train_model

SPECS = [
    ModelSpec.parse("digits/smallcnn-w0.25/FP/sgd/s0/e2"),
    ModelSpec.parse("digits/smallcnn-w0.25/Q2/sgd/s1/e1"),
    ModelSpec.parse("digits/resnet18-w0.125/Q1/sgd/s2/e1"),
]


def _collect(workers):
    trained, steps = {}, []
    tm.train_models(
        SPECS,
        lambda spec, result: trained.__setitem__(spec, result),
        device="cpu",
        progress=steps.append,
        workers=workers,
    )
    return trained, steps


def test_side_by_side_training_gives_each_model_the_weights_it_gets_alone():
    together, steps = _collect(workers=3)
    alone = train_model(SPECS[0], device="cpu")
    one_by_one, _ = _collect(workers=1)
    for spec in SPECS:
        a, b = together[spec].model.state_dict(), one_by_one[spec].model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), spec.name
        assert together[spec].test_acc == one_by_one[spec].test_acc
    first = alone.model.state_dict()
    assert all(torch.equal(first[k], v) for k, v in together[SPECS[0]].model.state_dict().items())
    # progress: one report per epoch (4 in all), counted in the order they happen, then one per finished model
    epochs = [s for s in steps if s.result is None]
    assert [s.epochs_done for s in epochs] == [1, 2, 3, 4] and epochs[-1].fraction == 1.0
    assert all(s.epochs_total == 4 and s.models_total == 3 for s in steps)
    finished = [s for s in steps if s.result is not None]
    assert sorted(s.spec.name for s in finished) == sorted(s.name for s in SPECS)
    assert [s.models_done for s in finished] == [1, 2, 3] and "trained: test accuracy" in finished[0].message
    assert "(1/3): epoch 1/2, validation accuracy" in next(s.message for s in epochs if s.spec == SPECS[0])


def test_only_one_thread_models_without_dropout_train_side_by_side(monkeypatch):
    monkeypatch.setenv("TREND_CORES", "2")
    cpu = torch.device("cpu")
    assert tm.side_by_side(SPECS, cpu) == 2 and tm.side_by_side(SPECS[:1], cpu) == 1
    cifar = [
        ModelSpec.parse("cifar10/smallcnn-w0.25/FP/sgd/s0/e1"),
        ModelSpec.parse("cifar10/smallcnn-w0.25/FP/sgd/s1/e1"),
    ]
    assert tm.side_by_side(cifar, cpu) == 1  # CIFAR trains on every thread, one model at a time
    monkeypatch.setenv("TREND_CORES", "1")
    assert tm.side_by_side(SPECS, cpu) == 1
    assert tm.draws_global_randomness(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))
    assert not tm.draws_global_randomness(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)))


def test_a_cancel_keeps_the_models_already_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("TREND_CORES", "1")  # one at a time: which model finishes first is known
    zoo = Zoo(tmp_path)
    stop = {"now": False}

    def progress(step):
        if step.result is not None:
            stop["now"] = True  # cancel once the first model is saved

    with pytest.raises(TrainingCancelled):
        zoo.train_many(SPECS[:2], device="cpu", progress=progress, cancel=lambda: stop["now"])
    assert zoo.has(SPECS[0]) and not zoo.has(SPECS[1])  # the first model kept, the second never written
    assert zoo.problems() == []
    trained = zoo.train_many(SPECS[:2], device="cpu")  # the next call trains only what is missing
    assert len(trained) == 1 and all(zoo.has(s) for s in SPECS[:2])


def test_a_cancel_stops_models_training_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setenv("TREND_CORES", "2")
    zoo, calls = Zoo(tmp_path), []

    def cancel():
        calls.append(1)
        return len(calls) > 4  # a few batches in

    with pytest.raises(TrainingCancelled):
        zoo.train_many(SPECS[:2], device="cpu", cancel=cancel)
    assert not any(zoo.has(s) for s in SPECS[:2]) and zoo.problems() == []


def test_a_failure_in_one_model_stops_the_others_and_is_raised():
    def progress(step):
        if step.spec == SPECS[1]:  # its first epoch report: the failure comes from inside its training
            raise ValueError("boom")

    trained = {}
    with pytest.raises(ValueError, match="boom"):
        tm.train_models(
            SPECS, lambda spec, result: trained.__setitem__(spec, result), "cpu", progress=progress, workers=2
        )
    assert SPECS[1] not in trained


def test_a_distributed_executor_reports_each_model_as_it_lands(tmp_path, monkeypatch):
    from trend_core.runtime.executors import LocalExecutor

    class OffProcess(LocalExecutor):  # runs units in threads here, but the zoo treats it like a cluster
        distributed = True

    executor = OffProcess(workers=2)
    steps = []
    zoo = Zoo(tmp_path)
    assert zoo.train_many(SPECS[:2], device="cpu", progress=steps.append, executor=executor) == SPECS[:2]
    assert all(zoo.has(s) for s in SPECS[:2])
    assert [s.models_done for s in steps] == [1, 2] and steps[-1].fraction == 1.0
    assert all(s.report is None and "trained (" in s.message for s in steps)
