"""Every page run shows its `trend ...` command, and that command reproduces the page's result exactly."""

from __future__ import annotations

import json
import math
import shlex

from app_support import assert_clean, open_app, sync_jobs, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1
from test_app_transferability import LABELS, PAGE, set_up_run


def test_the_transferability_page_echoes_a_command_that_reproduces_its_matrix(zoo_home, capsys):
    from trend_core.cli import main
    from trend_core.runtime.jobs import get_manager

    at = set_up_run(open_app(PAGE), eps=0.15, images=40)
    at.button(key="tr_run").click().run()
    assert_clean(at)
    job = get_manager().jobs(kind="transfer")[0]
    command = job.meta["command"]
    assert command in [code.value for code in at.code]  # shown on the page (copyable)
    argv = shlex.split(command)
    assert argv[:2] == ["trend", "transfer"] and "--step-size" in argv and "--limit" in argv
    capsys.readouterr()
    assert main([*argv[1:], "--json", "--no-cache"]) == 0  # recomputed from scratch, not read from the store
    shell = json.loads(capsys.readouterr().out)
    page = job.result.matrix()
    labels = [LABELS[n] for n in (FP, FP_S1, Q1)]
    assert shell["n_images"] == job.result.n_images == 40 and shell["eps"] == job.result.eps
    for s in labels:
        for t in labels:
            ours, theirs = page.at[s, t], shell["tm"][s][t]
            assert (theirs is None and math.isnan(ours)) or theirs == ours  # exactly the same numbers


def test_engine_jobs_record_their_commands(zoo_home):
    from trend_core.models.zoo import Zoo
    from trend_core.service.boundary import submit_boundary
    from trend_core.service.curve import submit_tm_fit
    from trend_core.service.vote_jobs import submit_trend_evaluation
    from trend_core.storage.store import get_store

    zoo, store = Zoo(zoo_home), get_store(zoo_home)
    boundary = submit_boundary(zoo, store, [FP, Q1], index=3, resolution=5)
    assert boundary.meta["command"] == f"trend boundary --model {FP} {Q1} --index 3 --resolution 5"
    evaluation = submit_trend_evaluation(zoo, store, [FP, FP_S1, Q1], eps=0.1, steps=2, limit=10)
    assert evaluation.meta["command"].startswith(f"trend ensemble-attack --models {FP} {FP_S1} {Q1} --rule agd")
    assert (
        "--members" in evaluation.meta["command"] and "--step-size 0.0625" in evaluation.meta["command"]
    )  # 2 steps reach 0.1
    fit = submit_tm_fit(zoo, store, FP, Q1, [0.05, 0.1, 0.2], steps=2, limit=10)
    assert fit.meta["command"].startswith(f"trend fit-tm --source {FP} --target {Q1} --eps 0.05 0.1 0.2 --steps 2")
