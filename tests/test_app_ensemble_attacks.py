"""The Ensemble attacks page under AppTest: the four rules over eps (lines) and at one eps (bars), per-member
agreement, gradient-domination pictures with member names; bad input (an ensemble of one, eps 0) becomes a message."""

from __future__ import annotations

import pytest
from app_support import assert_clean, empty_home, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1

PAGE = "pages/ensemble_attacks.py"
MEMBERS = (FP, FP_S1, Q1)
LABELS = ["FP-s0", "FP-s1", "Q1-s0"]
RULES = ["D-AG", "EMPIR", "U-GD", "A-GD"]


def test_empty_zoo_says_what_to_do_first(empty_home):
    at = open_app(PAGE)
    assert any("build the digits zoo on the Overview page" in m for m in texts(at.info))
    assert not at.get("plotly_chart")


def launch(at, members=MEMBERS, eps=(0.05, 0.2), points=2):
    at.multiselect(key="ea_members").set_value(list(members))
    at.slider(key="ea_eps").set_value(eps)
    at.number_input(key="ea_points").set_value(points)
    at.number_input(key="ea_steps").set_value(3)
    at.number_input(key="ea_limit").set_value(12)
    at.button(key="ea_run").click().run()
    assert_clean(at)
    return at


def test_four_rules_over_eps_and_at_one_eps_with_member_numbers(zoo_home):
    from trend_core.runtime.jobs import get_manager

    at = launch(open_app(PAGE))
    assert not texts(at.error)
    result = get_manager().jobs(kind="ensemble-sweep")[0].result
    ens = result["sweep"].query("model == 'ensemble'").set_index(["rule", "eps"])["success_rate"]
    figs = figures(at)
    lines = next(f for f in figs if f["layout"]["xaxis"]["title"]["text"] == "eps (L-inf)")
    assert [t["name"] for t in lines["data"]] == RULES
    for trace, rule in zip(lines["data"], ["dag", "empir", "ugd", "agd"]):
        assert trace["x"] == [0.05, 0.2]
        assert trace["y"] == pytest.approx([ens[(rule, 0.05)], ens[(rule, 0.2)]])
    assert ens[("agd", 0.2)] > 0  # eps 0.2 fools this ensemble on some digits
    bars = next(f for f in figs if f["data"][0]["type"] == "bar" and f["layout"]["xaxis"]["title"]["text"] == "attack")
    eps = at.select_slider(key="ea_bar_eps").value
    assert bars["data"][0]["x"] == RULES
    assert bars["data"][0]["y"] == pytest.approx([ens[(r, eps)] for r in ["dag", "empir", "ugd", "agd"]])
    agreement = next(f for f in figs if f["layout"]["xaxis"]["title"]["text"] == "member")
    assert [t["name"] for t in agreement["data"]] == RULES
    assert agreement["data"][0]["x"] == LABELS
    assert all(0 <= v <= 1 for t in agreement["data"] for v in t["y"])
    agree, fooled = at.dataframe[0].value, at.dataframe[1].value
    assert list(agree.index) == LABELS and list(agree.columns) == RULES
    assert list(fooled.index) == LABELS and list(fooled.columns) == RULES
    numbers = result["agreement"].query("eps == @eps and rule == 'dag'").set_index("member")["agreement"]
    assert list(agree["D-AG"]) == pytest.approx([numbers[m] for m in LABELS])
    own = result["sweep"].query("eps == @eps and rule == 'agd' and model != 'ensemble'").set_index("model")
    assert list(fooled["A-GD"]) == pytest.approx([own.at[m, "acc_on_ensemble_adv"] for m in LABELS])
    # another eps for the bars: redrawn from the same job, no new attack
    other = 0.05 if eps == 0.2 else 0.2
    at.select_slider(key="ea_bar_eps").set_value(other).run()
    assert_clean(at)
    bars = next(
        f for f in figures(at) if f["data"][0]["type"] == "bar" and f["layout"]["xaxis"]["title"]["text"] == "attack"
    )
    assert bars["data"][0]["y"] == pytest.approx([ens[(r, other)] for r in ["dag", "empir", "ugd", "agd"]])
    assert len(get_manager().jobs(kind="ensemble-sweep")) == 1
    assert len(at.get("download_button")) == 4


def test_gradient_pictures_name_every_member(zoo_home):
    at = open_app(PAGE)
    at.multiselect(key="ea_members").set_value(list(MEMBERS))
    at.selectbox(key="ea_image").set_value(5).run()
    assert_clean(at)
    figs = figures(at)
    gradients = next(f for f in figs if any(t["name"].startswith("gradients ") for t in f["data"]))
    names = [t["name"] for t in gradients["data"]]
    assert names[0] == "image clean" and all(any(label in n for n in names[1:]) for label in LABELS)
    limits = {(t["zmin"], t["zmax"]) for t in gradients["data"][1:]}
    assert len(limits) == 1  # one shared scale for every member's gradient
    directions = next(f for f in figs if any(t["name"] == "ensemble A-GD direction" for t in f["data"]))
    assert [t["name"] for t in directions["data"][:3]] == ["FP-s0 sign", "FP-s0 D-AG - sign", "FP-s0 A-GD - sign"]
    table = at.dataframe[0].value
    assert list(table.index) == LABELS and list(table.columns) == ["D-AG", "A-GD"]
    assert ((table >= 0) & (table <= 1)).all().all()


def test_too_few_members_is_one_message_and_the_page_stays_usable(zoo_home):
    at = open_app(PAGE)
    for members, says in (((), "none is chosen"), ((FP,), "only one is chosen")):
        at.multiselect(key="ea_members").set_value(list(members)).run()
        assert_clean(at)
        assert not texts(at.error)  # one alert, not an error from the run and another from the gradient pictures
        (warning,) = texts(at.warning)
        assert warning.startswith("An ensemble needs at least two members;") and says in warning, warning
        assert at.button(key="ea_run").disabled
        assert not at.get("plotly_chart")
    at.multiselect(key="ea_members").set_value([FP, Q1]).run()  # and it recovers at once
    assert not at.button(key="ea_run").disabled
    at = launch(at, members=(FP, Q1))
    assert not texts(at.warning) and not texts(at.error) and at.get("plotly_chart")


def test_default_members_are_the_papers_ensemble(zoo_home):
    at = open_app(PAGE)  # the zoo has FP-s0, FP-s1 and Q1-s0 (no Q2): FP and Q1, then the next model
    assert at.multiselect(key="ea_members").value == [FP, Q1, FP_S1]


def test_eps_values_sit_on_the_sliders_grid(zoo_home):
    at = open_app(PAGE)
    at.multiselect(key="ea_members").set_value([FP, Q1])
    at.slider(key="ea_eps").set_value((0.02, 0.3))
    at.number_input(key="ea_points").set_value(4)
    at.number_input(key="ea_steps").set_value(1)
    at.number_input(key="ea_limit").set_value(4)
    at.button(key="ea_run").click().run()
    assert_clean(at)
    from trend_core.runtime.jobs import get_manager

    eps = sorted(get_manager().jobs(kind="ensemble-sweep")[0].result["sweep"]["eps"].unique())
    assert eps == pytest.approx([0.02, 0.115, 0.205, 0.3])  # not 0.11333, 0.20667


def test_bad_eps_becomes_a_message(zoo_home):
    at = open_app(PAGE)
    at = launch(at, eps=(0.0, 0.2))
    assert any("eps must be in (0, 1]" in m for m in texts(at.error))
    assert not [f for f in figures(at) if f["layout"].get("xaxis", {}).get("title", {}).get("text") == "eps (L-inf)"]
