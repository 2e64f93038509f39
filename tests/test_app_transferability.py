"""The Transferability page under AppTest: launch a run, read the heatmap, asymmetry, tables, examples and
downloads; bad input becomes a message; a finished run comes back from the store in a new server process."""

from __future__ import annotations

import pytest
from app_support import APP, assert_clean, empty_home, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1
from streamlit.testing.v1 import AppTest

PAGE = "pages/transferability.py"
LABELS = {FP: "FP-s0", FP_S1: "FP-s1", Q1: "Q1-s0"}


def set_up_run(at, sources=(FP, FP_S1, Q1), targets=(FP, FP_S1, Q1), eps=0.1, images=30):
    at.radio(key="tr_mode").set_value("Pick sources and targets").run()
    at.multiselect(key="tr_sources").set_value(list(sources))
    at.multiselect(key="tr_targets").set_value(list(targets))
    at.slider(key="tr_eps_pgd").set_value(eps)
    at.number_input(key="tr_steps_pgd").set_value(10)
    at.slider(key="tr_limit").set_value(images)
    return at


def heatmap_traces(at) -> dict[str, dict]:
    """The TM heatmap's traces by name (TM, row average, column average, overall)."""
    spec = next(f for f in figures(at) if any(t.get("name") == "row average" for t in f["data"]))
    return {t["name"]: t for t in spec["data"]}


def test_empty_zoo_says_what_to_do_first(empty_home):
    at = open_app(PAGE)
    assert any("needs at least two digits models" in m for m in texts(at.info))
    assert not at.get("plotly_chart")


@pytest.fixture
def finished_run(zoo_home):
    at = set_up_run(open_app(PAGE))
    at.button(key="tr_run").click().run()
    assert_clean(at)
    assert not texts(at.error)
    return at


def test_run_shows_heatmap_with_model_names_averages_and_hover_counts(finished_run, zoo_home):
    from trend_core.runtime.jobs import get_manager

    at = finished_run
    traces = heatmap_traces(at)
    labels = [LABELS[n] for n in (FP, FP_S1, Q1)]
    tm = traces["TM"]
    assert tm["x"] == labels and tm["y"] == labels
    result = get_manager().jobs(kind="transfer")[0].result
    matrix = result.matrix()
    for i, s in enumerate(labels):
        assert tm["z"][i][i] == 1.0
        for j, t in enumerate(labels):
            assert tm["z"][i][j] == pytest.approx(matrix.loc[s, t])
        assert traces["row average"]["z"][i][0] == pytest.approx(matrix.loc[s, "row_avg"])
    assert traces["column average"]["z"][0] == pytest.approx(list(matrix.loc["col_avg", labels]))
    pairs = result.long().set_index(["source", "target"])
    generated, transferred = tm["customdata"][0][2][:2]  # FP-s0 -> Q1-s0: counts in the hover
    assert (generated, transferred) == (
        pairs.loc[("FP-s0", "Q1-s0"), "generated"],
        pairs.loc[("FP-s0", "Q1-s0"), "transferred"],
    )
    assert "transferred" in tm["hovertemplate"] and "L2" in tm["hovertemplate"]
    assert generated > 0  # PGD at eps 0.1 fools the FP model on digits


def test_asymmetry_tables_examples_and_downloads(finished_run):
    at = finished_run
    asym = next(f for f in figures(at) if "TM(a→b)" in f["data"][0]["hovertemplate"])["data"][0]
    z = asym["z"]
    assert all(z[i][j] == pytest.approx(-z[j][i]) for i in range(3) for j in range(3))
    per_pair = at.dataframe[0].value
    assert len(per_pair) == 6 and {"generated", "transferred", "transfer %", "L2", "L-inf"} <= set(per_pair.columns)
    assert (per_pair["transferred"] <= per_pair["generated"]).all()
    seeds = at.dataframe[1].value  # FP s0 and s1 form a seed group: mean ± std over its two pairs
    assert len(seeds) == 1 and "±" in seeds["transfer %"].iloc[0]
    assert {"mean L2", "mean L-inf"} <= set(seeds.columns) and "transfer_pct" not in seeds.columns
    example_figs = [f for f in figures(at) if any(t.get("name", "").startswith("clean") for t in f["data"])]
    assert example_figs, "no example images shown"
    tiles = example_figs[0]["data"]
    assert {t["name"].split()[0] for t in tiles} == {"clean", "adversarial", "perturbation"}
    assert len(tiles) % 3 == 0
    downloads = [b.proto.label for b in at.get("download_button")]
    assert downloads == ["Download CSV", "Download JSON"] * 2


def test_seed_family_preset_runs_the_seed_pair(zoo_home):
    at = open_app(PAGE)
    family = next(o for o in at.selectbox(key="tr_family").options if o.startswith("seeds:"))
    at.selectbox(key="tr_family").set_value(family)
    at.slider(key="tr_limit").set_value(30)
    at.number_input(key="tr_steps_pgd").set_value(5).run()
    at.button(key="tr_run").click().run()
    assert_clean(at)
    assert heatmap_traces(at)["TM"]["x"] == ["FP-s0", "FP-s1"]


def test_bad_input_becomes_a_message(zoo_home):
    at = set_up_run(open_app(PAGE), sources=())
    at.button(key="tr_run").click().run()
    assert_clean(at)
    assert texts(at.error) == ["Choose at least one source and one target model."]
    at = set_up_run(open_app(PAGE), eps=0.0)
    at.button(key="tr_run").click().run()
    assert_clean(at)
    (message,) = texts(at.error)
    assert "eps must be" in message
    assert not at.get("plotly_chart")


def test_a_new_server_process_gets_the_result_from_the_store(finished_run, monkeypatch):
    import trend_core.runtime.jobs as jobs

    first = heatmap_traces(finished_run)["TM"]["z"]
    jobs.reset_manager()  # a restarted server: no job in memory
    at = set_up_run(open_app(PAGE))
    at.button(key="tr_run").click().run()
    assert_clean(at)
    job = jobs.get_manager().jobs(kind="transfer")[0]
    assert job.from_store
    assert heatmap_traces(at)["TM"]["z"] == first
    assert any(t.get("name", "").startswith("clean") for f in figures(at) for t in f["data"])  # examples rebuilt


def test_family_presets_group_models_differing_in_one_factor():
    from trend_core.config.specs import ModelSpec
    from trend_core.models.families import families
    from trend_core.models.zoo import preset_specs

    found = families(preset_specs("digits"))
    by_factor = {name.split(":")[0]: {s.short_name for s in specs} for name, specs in found.items()}
    assert by_factor["seeds"] == {"FP-s0", "FP-s1", "FP-s2"}
    assert by_factor["input quantization"] == {"FP-s0", "Q8-s0", "Q4-s0", "Q2-s0", "Q1-s0", "HT-s0"}
    assert by_factor["weight quantization"] == {"FP-s0", "W2-s0"}
    assert by_factor["activation quantization"] == {"FP-s0", "A2-s0"}
    assert by_factor["optimizers"] == {"FP-s0", "FP-adam-s0"}
    assert by_factor["architectures"] == {"FP-s0", "FP-VGG11BN-s0"}
    assert len(found) == 6 and all(f"({len(specs)} models)" in name for name, specs in found.items())
    assert families([ModelSpec.parse(FP)]) == {}


def test_a_result_is_shown_only_under_its_own_dataset(finished_run, zoo_home, tmp_path, monkeypatch):
    """A page opened with another dataset in the sidebar does not recall the digits run (its class names would
    be wrong there); with digits it does."""
    from test_data import write_fake_cifar10

    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo
    from trend_core.nn.build import build_model

    write_fake_cifar10(tmp_path / "cifar-data")  # small files in the real format (15 test images: no slider)
    monkeypatch.setenv("TREND_DATA", str(tmp_path / "cifar-data"))
    zoo = Zoo(zoo_home)
    for seed in (0, 1):  # two untrained CIFAR-10 models, so that the page is past its empty state
        spec = ModelSpec.parse(f"cifar10/smallcnn-w0.25/FP/sgd/s{seed}")
        zoo.save(spec, build_model(spec), {"source": "test", "val_acc": None, "test_acc": None})
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.selectbox[0].set_value("cifar10").run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    assert at.session_state["trend_context"].dataset == "cifar10"  # what the sidebar chose
    assert not any(any(t.get("name") == "row average" for t in f["data"]) for f in figures(at))
    assert any("press **Run transfer**" in m for m in texts(at.info))
    assert heatmap_traces(open_app(PAGE))["TM"]["z"] == heatmap_traces(finished_run)["TM"]["z"]


def test_an_imported_seed_stays_out_of_families_and_seed_statistics_unless_included(zoo_home, tmp_path):
    """FP's weights uploaded as .../FP/sgd/s7 are not a trained seed 7: the seed family and the mean ± std over
    seeds leave them out until the user includes imported models."""
    import torch
    from conftest import TEST_ZOO_DIR

    from trend_core.models.checkpoints import is_imported
    from trend_core.models.zoo import Zoo

    weights = tmp_path / "fp-weights.pt"
    torch.save(Zoo(TEST_ZOO_DIR).load(FP).state_dict(), weights)
    imported = "digits/resnet18-w0.25/FP/sgd/s7"
    meta = Zoo(zoo_home).import_state_dict(imported, weights, evaluate=False)
    assert meta["origin"] == "imported" and is_imported(meta)
    at = open_app(PAGE)
    family = next(o for o in at.selectbox(key="tr_family").options if o.startswith("seeds:"))
    assert "(2 models)" in family  # FP s0 and s1: not the import
    at.toggle(key="tr_imported").set_value(True).run()
    family = next(o for o in at.selectbox(key="tr_family").options if o.startswith("seeds:"))
    assert "(3 models)" in family
    at.selectbox(key="tr_family").set_value(family)
    at.slider(key="tr_limit").set_value(30)
    at.number_input(key="tr_steps_pgd").set_value(3).run()
    at.button(key="tr_run").click().run()
    assert_clean(at)
    seeds = next(d.value for d in at.dataframe if "models" in d.value.columns)
    assert list(seeds["models"]) == [2]  # FP s0 and s1; s7 is imported
    at.toggle(key="tr_imported_seeds").set_value(True).run()
    seeds = next(d.value for d in at.dataframe if "models" in d.value.columns)
    assert list(seeds["models"]) == [3]
