"""ModelSpec: canonical names round-trip, keys are stable, invalid values are refused with one sentence."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trend_core.config.architectures import list_archs
from trend_core.config.specs import DEFAULT_EPOCHS, INPUT_QUANTS, ModelSpec
from trend_core.errors import TrendError

bits = st.one_of(st.just(32), st.integers(1, 16))


@st.composite
def specs(draw):
    dataset = draw(st.sampled_from(["digits", "cifar10", "cifar100"]))
    return ModelSpec(
        dataset=dataset,
        arch=draw(st.sampled_from(list_archs(dataset))),
        width=draw(st.sampled_from([0.125, 0.25, 0.5, 1.0, 2.0])),
        optimizer=draw(st.sampled_from(["sgd", "adam"])),
        seed=draw(st.integers(0, 10_000)),
        input_quant=draw(st.sampled_from(INPUT_QUANTS)),
        weight_bits=draw(bits),
        act_bits=draw(bits),
        epochs=draw(st.integers(1, 500)),
        lr=draw(st.sampled_from([0.01, 0.1, 0.001, 3e-4])),
    )


@given(specs())
@settings(max_examples=200, deadline=None)
def test_name_round_trips(spec):
    assert ModelSpec.parse(spec.name) == spec
    assert ModelSpec.parse(spec.name).key == spec.key
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_documented_example_and_defaults():
    spec = ModelSpec.parse("digits/resnet18-w0.25/Q2/sgd/s0")
    assert (spec.arch, spec.width, spec.input_quant, spec.seed) == ("resnet18", 0.25, "Q2", 0)
    assert spec.weight_bits == spec.act_bits == 32
    assert spec.epochs == DEFAULT_EPOCHS["digits"]
    assert spec.name == "digits/resnet18-w0.25/Q2/sgd/s0"
    full = ModelSpec.parse("cifar10/vgg11/FP-W2-A4/adam/s3/e10/lr0.001")
    assert (full.weight_bits, full.act_bits, full.epochs, full.lr, full.optimizer) == (2, 4, 10, 0.001, "adam")
    assert full.short_name == "W2-A4-VGG11-adam-s3"


def test_keys_differ_for_different_specs_and_are_stable():
    a = ModelSpec.parse("digits/resnet18-w0.25/Q2/sgd/s0")
    assert a.key == ModelSpec.parse("digits/resnet18-w0.25/Q2/sgd/s0").key
    assert len(a.key) == 16
    assert a.key != a.replace(seed=1).key != a.replace(input_quant="Q1").key


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"dataset": "svhn"}, "digits, mnist, cifar10"),
        ({"arch": "resnet99"}, "resnet18"),
        ({"optimizer": "rmsprop"}, "sgd, adam"),
        ({"input_quant": "Q9"}, "Q8"),
        ({"weight_bits": 0}, "1..16 or 32"),
        ({"act_bits": 20}, "1..16 or 32"),
        ({"seed": -1}, "non-negative"),
        ({"seed": 2**32}, "up to 4294967295"),
        ({"width": 0}, "[0.125, 4]"),
        ({"width": 0.0001}, "[0.125, 4]"),
        ({"epochs": -3}, "1..10000"),
        ({"epochs": 0}, "1..10000"),
        ({"pretrained": True}, "ImageNet"),
        ({"dataset": "imagenet", "arch": "resnet18"}, "tv_resnet18"),
    ],
)
def test_invalid_values_are_refused_with_the_choices(kwargs, words):
    with pytest.raises(TrendError) as info:
        ModelSpec(**kwargs)
    message = str(info.value)
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name",
    [
        "",
        "digits/resnet18",
        "digits/resnet18/Q2/sgd/seven",
        "digits/resnet18/Q2-X3/sgd/s0",
        "digits/resnet18-wabc/Q2/sgd/s0",
        "digits/resnet18/Q2/sgd/s0/zzz",
        "digits/resnet18/Q2/sgd/s0/lrX",
    ],
)
def test_bad_names_are_refused(name):
    with pytest.raises(TrendError):
        ModelSpec.parse(name)
