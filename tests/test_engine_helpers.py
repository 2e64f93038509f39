"""Engine logic that used to live in pages: spec families, merging live and stored transfer runs, label -> spec
name, accuracies from the zoo."""

from __future__ import annotations

import pytest
from conftest import FP, FP_S1, Q1

from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.families import families
from trend_core.models.members import zoo_accuracies
from trend_core.models.zoo import Zoo
from trend_core.runtime.jobs import JobManager
from trend_core.service.history import finished_transfer_runs
from trend_core.service.submit import belongs_to
from trend_core.service.transfer import submit_transfer
from trend_core.storage.store import MemoryStore


def test_families_group_specs_that_differ_in_one_factor():
    specs = [ModelSpec.parse(n) for n in (FP, FP_S1, Q1, "digits/resnet18-w0.25/Q1/sgd/s1")]
    found = families(specs)
    seeds = [members for name, members in found.items() if name.startswith("seeds:")]
    assert sorted(len(m) for m in seeds) == [2, 2]
    inputs = [members for name, members in found.items() if name.startswith("input quantization:")]
    assert sorted(s.name for s in inputs[0]) == sorted([FP, Q1])
    assert families([ModelSpec.parse(FP)]) == {}


def test_finished_runs_merge_live_and_stored_runs_of_one_folder_and_dataset(linked_zoo_home):
    zoo, store = Zoo(linked_zoo_home), MemoryStore()
    manager = JobManager(sync=True)
    job = submit_transfer(zoo, store, [FP], [FP, Q1], "pgd", {"eps": 0.1, "steps": 2}, limit=12, manager=manager)
    assert finished_transfer_runs(zoo, store, "digits", manager) == [job]
    assert finished_transfer_runs(zoo, store, "cifar10", manager) == []
    restarted = JobManager(sync=True)  # a new server process: only the store's index knows the run
    (again,) = finished_transfer_runs(zoo, store, "digits", restarted)
    assert again.key == job.key and again.from_store and again.result.matrix().equals(job.result.matrix())
    assert again.meta["command"] == job.meta["command"]
    assert belongs_to(job, str(linked_zoo_home.resolve()), "digits", strict=True)
    assert not belongs_to(job, "/elsewhere", "digits")

    result = job.result
    assert result.spec_names(["FP-s0", "Q1-s0"]) == [FP, Q1]
    with pytest.raises(TrendError, match="not a zoo model"):
        result.spec_names(["nobody"])
    accuracies = zoo_accuracies(zoo, result)
    assert set(accuracies) == {"FP-s0", "Q1-s0"} and all(0.5 < a <= 1 for a in accuracies.values())


def test_default_pools_leave_out_short_trainings_and_imports():
    from trend_core.models.families import fully_trained, imported_names

    demo = "digits/resnet18-w0.25/Q1/sgd/s0/e4"
    upload = "digits/resnet18-w0.25/FP/sgd/s7"
    metas = [
        {"name": FP},
        {"name": FP_S1},
        {"name": Q1},
        {"name": demo},
        {"name": upload, "source": "imported from fp.pt", "origin": "imported"},
    ]
    kept, left_out = fully_trained([FP, FP_S1, Q1, demo, upload], metas)
    assert kept == [FP, FP_S1, Q1]
    assert left_out == {demo: "trained 4 of 20 epochs", upload: "imported weights"}
    assert fully_trained([FP, demo], metas) == ([FP, demo], {})  # one model would be left: keep them all
    assert imported_names(metas) == {upload}
    assert imported_names([{"name": upload, "source": "imported from old.pt"}]) == {upload}  # before "origin"
    specs = [ModelSpec.parse(n) for n in (FP, FP_S1, upload)]
    seeds = [len(m) for name, m in families(specs, imported={upload}).items() if name.startswith("seeds:")]
    assert seeds == [2]
