"""The Robustness audit page and the TREND builder's audit section under AppTest: a run shows the robust
accuracy chart (one line per attack and the worst case), the table and the flags; bad input is a message."""

from __future__ import annotations

import pytest
from app_support import assert_clean, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1
from test_app_trend_builder import LABELS, built  # noqa: F401  (the builder after a transfer run)

PAGE = "pages/audit.py"


@pytest.fixture(autouse=True)
def small_budget(monkeypatch):
    """The quick battery with tiny budgets (same attacks, same code paths): the page test stays fast."""
    import trend_core.experiments.audit as audit_module

    monkeypatch.setitem(audit_module.LEVEL_BUDGETS, "quick", audit_module.Budget(8, 1, 40, 2, 1))


def test_auditing_one_model_shows_chart_table_and_flags(zoo_home):
    at = open_app(PAGE)
    at.toggle(key="au_ensemble").set_value(False).run()
    at.selectbox(key="au_model").set_value(FP)
    at.slider(key="au_eps").set_value((0.05, 0.1))
    at.number_input(key="au_limit").set_value(8)
    at.button(key="au_run").click().run()
    assert_clean(at)
    assert not texts(at.error)
    from trend_core.runtime.jobs import get_manager

    result = get_manager().jobs(kind="audit")[0].result
    chart = next(f for f in figures(at) if f["layout"]["yaxis"]["title"]["text"] == "robust accuracy")
    names = [trace["name"] for trace in chart["data"]]
    assert names[-1] == "worst case (every attack)"
    assert set(result["robust"]["attack"]) == set(names[:-1])
    worst = dict(zip(chart["data"][-1]["x"], chart["data"][-1]["y"]))
    assert worst[0.1] == pytest.approx(result["worst_case"].set_index("eps").at[0.1, "robust_accuracy"])
    shown = texts(at.warning) + texts(at.success)
    assert len([m for m in shown if m.startswith("**")]) == 5  # every flag, fired or not, with its sentence
    for passed in texts(at.success):  # a check that passed reads as one ("APGD has converged: yes"), never
        assert "not_converged" not in passed and ": yes." in passed  # a green mark beside a flag's name
    assert chart["layout"]["xaxis"]["range"] == pytest.approx([0, 0.11])  # the chosen range, not up to eps 0.5
    assert "Audit of the FP-s0" in texts(at.subheader)  # the model's label, as the pickers show it


def test_the_audit_starts_from_the_papers_models(zoo_home):
    at = open_app(PAGE)
    assert list(at.multiselect(key="au_members").value) == [FP, Q1, FP_S1]  # FP and Q1 first, not zoo order


def test_an_ensemble_of_one_member_is_a_message(zoo_home):
    at = open_app(PAGE)
    at.toggle(key="au_ensemble").set_value(True).run()
    at.multiselect(key="au_members").set_value([Q1])
    at.button(key="au_run").click().run()
    assert_clean(at)
    assert any("at least two members" in m for m in texts(at.error))


def test_the_trend_builder_sets_a_gd_beside_the_worst_case(built):
    at = built
    at.slider(key="tb_k").set_value(2)
    at.slider(key="tb_eps").set_value(0.1)
    at.number_input(key="tb_limit").set_value(8)
    at.button(key="tb_audit").click().run()
    assert_clean(at)
    assert not texts(at.error)
    from trend_core.runtime.jobs import get_manager

    summary = get_manager().jobs(kind="trend-audit")[0].result["summary"]
    assert len(summary) == 3 and " + " in summary["model"].iloc[0]  # the ensemble, then each member alone
    assert set(summary["model"].iloc[1:]) <= set(LABELS)
    assert (summary["worst_case_accuracy"] <= summary["agd_accuracy"] + 1e-9).all()  # A-GD is in the battery
    shown = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert list(shown["model"]) == list(summary["model"])
    result = get_manager().jobs(kind="trend-audit")[0].result  # the verdict under the worst case, on the page
    assert result["sentence"].startswith("Under the audit's worst case at eps 0.1")
    assert result["sentence"] in texts(at.success) + texts(at.warning) + texts(at.info)
