"""Quantization layers: Qn levels, idempotence and identity BPDA; HT and HT-FS; DoReFa weights/activations."""

import numpy as np
import pytest
import torch

from trend_core.config.datasets import get_info
from trend_core.config.specs import ModelSpec
from trend_core.nn.build import Preprocess, build_model
from trend_core.nn.quant import FloydSteinbergHalftone, Halftone, InputQuantizer, QReLU, dorefa_weight, floyd_steinberg


def quantizer(bits: int, per_batch: bool = False) -> InputQuantizer:
    return InputQuantizer(bits, torch.tensor([-1.0, 0.0]), torch.tensor([2.0, 1.0]), per_batch=per_batch)


@pytest.mark.parametrize("bits", [1, 2, 4, 6, 8])
def test_input_quantizer_has_exactly_2_to_the_n_levels_per_channel(bits):
    q = quantizer(bits)
    x = torch.stack([torch.linspace(-1, 2, 5000), torch.linspace(0, 1, 5000)]).reshape(1, 2, 50, 100)
    out = q(x)
    for channel, (lo, hi) in enumerate([(-1.0, 2.0), (0.0, 1.0)]):
        levels = torch.unique(out[0, channel])
        assert len(levels) == 2**bits
        width = (hi - lo) / 2**bits
        expected = lo + width / 2 + width * torch.arange(2**bits)
        assert torch.allclose(levels, expected, atol=1e-5)
    assert out[0, 0].max() < 2.0  # the top value lands in the last bin, not above it


@pytest.mark.parametrize("bits", [1, 2, 8])
def test_input_quantizer_is_idempotent(bits):
    q = quantizer(bits)
    x = torch.rand(4, 2, 8, 8) * 3 - 1
    once = q(x)
    assert torch.equal(q(once), once)


@pytest.mark.parametrize("bits", [1, 2, 8])
def test_input_quantizer_gradient_is_the_identity(bits):
    x = torch.rand(3, 2, 5, 5, requires_grad=True)
    upstream = torch.randn(3, 2, 5, 5)
    (quantizer(bits)(x) * upstream).sum().backward()
    assert torch.equal(x.grad, upstream)


def test_fixed_range_makes_predictions_independent_of_the_batch_but_per_batch_does_not():
    x = torch.rand(1, 2, 4, 4) * 0.5
    other = torch.full((1, 2, 4, 4), 1.0)
    fixed = quantizer(2)
    assert torch.equal(fixed(torch.cat([x, other]))[:1], fixed(x))
    batch = quantizer(2, per_batch=True)
    assert not torch.equal(batch(torch.cat([x, other]))[:1], batch(x))


def test_halftone_outputs_zero_one_with_a_nonzero_substitute_gradient():
    ht = Halftone(3)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = ht(x)
    assert set(torch.unique(out).tolist()) <= {0.0, 1.0}
    assert 0.1 < out.mean() < 0.9
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def floyd_steinberg_reference(image: np.ndarray) -> np.ndarray:
    """Textbook raster-order Floyd-Steinberg on one 2-D image in [0, 1]."""
    work = image.astype(np.float64).copy()
    h, w = work.shape
    out = np.zeros_like(work)
    for i in range(h):
        for j in range(w):
            new = 1.0 if work[i, j] >= 0.5 else 0.0
            err = work[i, j] - new
            out[i, j] = new
            if j + 1 < w:
                work[i, j + 1] += err * 7 / 16
            if i + 1 < h:
                if j > 0:
                    work[i + 1, j - 1] += err * 3 / 16
                work[i + 1, j] += err * 5 / 16
                if j + 1 < w:
                    work[i + 1, j + 1] += err * 1 / 16
    return out


def test_floyd_steinberg_wavefront_equals_raster_order():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 9, 13, dtype=torch.float64)
    fast = floyd_steinberg(x)
    for n in range(3):
        for c in range(2):
            assert np.array_equal(fast[n, c].numpy(), floyd_steinberg_reference(x[n, c].numpy()))
    # error diffusion preserves the mean grey level closely
    assert abs(float(fast.mean() - x.mean())) < 0.05


def test_ht_fs_module_is_binary_with_identity_gradient():
    info = get_info("cifar10")
    pre = Preprocess(info.mean, info.std, "HT-FS")
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    out = pre(x)
    assert set(torch.unique(out).tolist()) <= {0.0, 1.0}
    assert isinstance(pre.quant, FloydSteinbergHalftone)
    out.sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_dorefa_weights_take_at_most_2_to_the_k_values(bits):
    w = torch.randn(64, 32, 3, 3, requires_grad=True)
    q = dorefa_weight(w, bits)
    assert len(torch.unique(q)) <= 2**bits
    assert len(torch.unique(q)) >= min(2**bits, 2)
    q.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert torch.equal(dorefa_weight(w, 32), w)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_dorefa_activations_clamp_and_round(bits):
    act = QReLU(bits)
    x = torch.linspace(-1, 2, 1001, requires_grad=True)
    out = act(x)
    levels = torch.unique(out)
    assert len(levels) == 2**bits
    assert levels.min() == 0 and levels.max() == 1
    out.sum().backward()
    inside = (x.detach() > 0) & (x.detach() < 1)
    assert torch.all(x.grad[inside] == 1)  # straight-through inside the clamp range
    assert torch.all(x.grad[~inside] == 0)


def test_quantized_resnet_quantizes_every_conv_but_not_the_linear():
    # the authors' DoReFa ResNet: the first conv and the shortcuts are quantized too, the final linear is not
    model = build_model(ModelSpec.parse("digits/resnet18-w0.25/FP-W2-A2/sgd/s0"))
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(getattr(c, "weight_bits", 32) == 2 for c in convs)
    assert getattr(model.net.linear, "weight_bits", 32) == 32
    assert any(isinstance(m, QReLU) and m.act_bits == 2 for m in model.net.modules())
    # state-dict keys are those of the plain network, so full-precision checkpoints load into it
    plain = build_model(ModelSpec.parse("digits/resnet18-w0.25/FP/sgd/s0"))
    assert model.state_dict().keys() == plain.state_dict().keys()


def test_quantized_vgg_keeps_first_and_last_layers_full_precision():
    model = build_model(ModelSpec.parse("digits/vgg11-w0.25/FP-W2/sgd/s0"))
    weighted = [m for m in model.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert getattr(weighted[0], "weight_bits", 32) == 32 and getattr(weighted[-1], "weight_bits", 32) == 32
    assert all(getattr(m, "weight_bits", 32) == 2 for m in weighted[1:-1])


@pytest.mark.parametrize("quant", ["Q1", "HT", "HT-FS", "FP"])
def test_every_model_passes_nonzero_input_gradients(quant):
    model = build_model(ModelSpec.parse(f"digits/resnet18-w0.25/{quant}/sgd/s0")).eval()
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    model(x).logsumexp(1).sum().backward()
    assert x.grad.abs().sum() > 0
