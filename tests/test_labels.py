"""Unique short labels (trend_core.config.labels) and the paper's default picks for the dashboard's pickers."""

from __future__ import annotations

import pytest

from trend_core.config.labels import label_map, paper_picks, unique_labels
from trend_core.config.specs import ModelSpec

PRESET_FP = "digits/resnet18-w0.25/FP/sgd/s0"
DEMO_FP = "digits/resnet18-w0.25/FP/sgd/s0/e4"
DEMO_Q1 = "digits/resnet18-w0.25/Q1/sgd/s0/e4"
PRESET_Q1 = "digits/resnet18-w0.25/Q1/sgd/s0"
PRESET_Q2 = "digits/resnet18-w0.25/Q2/sgd/s0"
A2 = "digits/resnet18-w0.25/FP-A2/sgd/s0"
W2 = "digits/resnet18-w0.25/FP-W2/sgd/s0"
ADAM = "digits/resnet18-w0.25/FP/adam/s0"


def test_short_names_stay_where_they_are_unique():
    assert unique_labels([PRESET_FP, PRESET_Q1, A2, ADAM]) == ["FP-s0", "Q1-s0", "A2-s0", "FP-adam-s0"]


def test_clashing_short_names_get_the_part_that_tells_them_apart():
    assert unique_labels([PRESET_FP, DEMO_FP, PRESET_Q1]) == ["FP-s0-e20", "FP-s0-e4", "Q1-s0"]
    wide = "digits/resnet18-w0.5/FP/sgd/s0"
    assert unique_labels([PRESET_FP, wide]) == ["FP-s0-w0.25", "FP-s0-w0.5"]
    both = "digits/resnet18-w0.5/FP/sgd/s0/e4"
    labels = unique_labels([PRESET_FP, DEMO_FP, wide, both])
    assert labels == ["FP-s0-e20-w0.25", "FP-s0-e4-w0.25", "FP-s0-e20-w0.5", "FP-s0-e4-w0.5"]
    assert len(set(labels)) == 4


def test_same_model_twice_gets_one_label_and_specs_or_names_both_work():
    assert unique_labels([PRESET_FP, ModelSpec.parse(PRESET_FP)]) == ["FP-s0", "FP-s0"]
    assert label_map([DEMO_FP, PRESET_FP, "not a model"]) == {
        DEMO_FP: "FP-s0-e4",
        PRESET_FP: "FP-s0-e20",
        "not a model": "not a model",
    }


def test_transfer_labels_use_them():
    from trend_core.config.labels import model_labels
    from trend_core.nn.build import build_model

    models = [build_model(ModelSpec.parse(n)) for n in (PRESET_FP, DEMO_FP)]
    assert model_labels(models) == ["FP-s0-e20", "FP-s0-e4"]


@pytest.mark.parametrize(
    "names, inputs, expected",
    [
        # alphabetical zoo order puts A2 and W2 first; the paper's story wants FP and Q1 (Fig. 4)
        ([A2, W2, PRESET_FP, PRESET_Q1, PRESET_Q2], ("FP", "Q1"), [PRESET_FP, PRESET_Q1]),
        ([A2, ADAM, PRESET_FP, PRESET_Q1, PRESET_Q2], ("FP", "Q1", "Q2"), [PRESET_FP, PRESET_Q1, PRESET_Q2]),
        # the preset's 20-epoch models over the quick demo's 4-epoch ones
        ([DEMO_FP, DEMO_Q1, PRESET_FP, PRESET_Q1], ("FP", "Q1"), [PRESET_FP, PRESET_Q1]),
        # the demo zoo alone, and a zoo without Q2: the next models fill in
        ([DEMO_FP, DEMO_Q1], ("FP", "Q1", "Q2"), [DEMO_FP, DEMO_Q1]),
        ([A2, W2, PRESET_FP], ("FP", "Q1", "Q2"), [PRESET_FP, A2, W2]),
        ([ADAM, A2], ("FP", "Q1"), [ADAM, A2]),  # a full-precision weights model before an A2 one; then A2 fills
    ],
)
def test_paper_picks(names, inputs, expected):
    assert paper_picks(names, inputs) == expected


def test_a_label_given_by_the_caller_wins_so_charts_say_what_pickers_say():
    from trend_core.config.labels import model_labels, set_label
    from trend_core.nn.build import build_model

    # alone in a run the preset FP would be "FP-s0"; the dashboard labels it across the zoo, beside the demo's
    fp = set_label(build_model(ModelSpec.parse(PRESET_FP)), label_map([PRESET_FP, DEMO_FP])[PRESET_FP])
    q1 = build_model(ModelSpec.parse(PRESET_Q1))
    assert model_labels([fp, q1]) == ["FP-s0-e20", "Q1-s0"]


def test_labels_from_a_tm_file_resolve_to_zoo_models():
    from trend_core.config.labels import models_for_label

    zoo = [PRESET_FP, DEMO_FP, PRESET_Q1, "cifar10/resnet18/FP/sgd/s0"]
    assert models_for_label("FP-s0-e20", zoo) == [PRESET_FP]
    assert models_for_label("FP-s0-e4", zoo) == [DEMO_FP]
    assert models_for_label(PRESET_Q1, zoo) == [PRESET_Q1]
    assert models_for_label("Q1-s0", zoo) == [PRESET_Q1]
    assert sorted(models_for_label("FP-s0", zoo)) == sorted([PRESET_FP, DEMO_FP, "cifar10/resnet18/FP/sgd/s0"])
    assert models_for_label("FP-s0", [PRESET_FP, PRESET_Q1]) == [PRESET_FP]
    assert models_for_label("nothing", zoo) == []
