"""Fidelity to the TREND authors' code (issue #9): each formula of their repository (purdue-nrl/TREND) is written
out here independently and compared with the engine on random tensors, outputs and input gradients; plus the
``paper``/``authors`` profile switches."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.attacks.cw import CarliniWagnerL2
from trend_core.attacks.ensemble_pgd import EnsemblePGD, member_gradients
from trend_core.config.datasets import get_info
from trend_core.config.profiles import PROFILES, Profile, get_profile
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.experiments.curve import default_fit_eps, measure_tm
from trend_core.nn.architectures import BasicBlock
from trend_core.nn.build import build_model
from trend_core.nn.quant import Halftone, InputQuantizer, QConv2d
from trend_core.nn.vote import MajorityVote, expected_correct, majority_vote
from trend_core.training.train import learning_rate, train_model, training_batch_size


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class RoundSTE(torch.autograd.Function):
    """Rounding to k bits with an identity backward (their uniform_quantize)."""

    @staticmethod
    def forward(ctx, x, k):
        n = float(2**k - 1)
        return torch.round(x * n) / n

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def their_weight(w: torch.Tensor, k: int) -> torch.Tensor:
    """Their weight quantizer: tanh, divide by 2 max|tanh| (detached), shift, round, scale back by max|tanh|
    (32 bits: the weight itself)."""
    if k == 32:
        return w
    t = torch.tanh(w)
    m = t.abs().max().detach()
    return m * (2 * RoundSTE.apply(t / 2 / m + 0.5, k) - 1)


def their_act(x: torch.Tensor, k: int) -> torch.Tensor:
    return x if k == 32 else RoundSTE.apply(torch.clamp(x, 0, 1), k)


# ----------------------------------------------------------------------------- 1. DoReFa weights
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_dorefa_conv_matches_the_authors_formula_with_its_scale(bits):
    torch.manual_seed(bits)
    conv = QConv2d(3, 8, 3, padding=1, bias=False, weight_bits=bits)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    upstream = torch.randn(2, 8, 6, 6)
    (conv(x) * upstream).sum().backward()
    ours_x, ours_w = x.grad.clone(), conv.weight.grad.clone()
    w = conv.weight.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    (F.conv2d(x2, their_weight(w, bits), padding=1) * upstream).sum().backward()
    torch.testing.assert_close(conv(x.detach()), F.conv2d(x.detach(), their_weight(w.detach(), bits), padding=1))
    torch.testing.assert_close(ours_x, x2.grad)
    torch.testing.assert_close(ours_w, w.grad)
    scale = torch.tanh(w.detach()).abs().max()
    levels = torch.unique(their_weight(w.detach(), bits))
    assert float(levels.abs().max()) == pytest.approx(float(scale))  # W1 = +-max|tanh w|


def test_bn_free_vgg_with_2_bit_weights_trains(digits):
    # Adam at 1e-3: with DoReFa weights without the max|tanh w| scale the loss was NaN from the first epoch
    spec = ModelSpec.parse("digits/vgg11-w0.25/FP-W2/adam/s0/e10/lr0.001")
    result = train_model(spec, digits, device="cpu")
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in result.history)
    assert result.history[-1].loss < 2.1  # ln(10) = 2.30 is chance
    assert result.test_acc > 0.25  # chance is 0.1


# ----------------------------------------------------------------------------- 2. halftoning
def their_halftone_parts(x: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Their Halftone2d: normalize each image by its mean and max - min over (C, H, W), depthwise filter + 1e-3;
    forward 0.5 sign + 0.5, backward substitute 0.5 sigmoid + 0.5."""
    kernel = torch.tensor([[-1.0, -2.0, -1.0], [-2.0, 16.0, -2.0], [-1.0, -2.0, -1.0]]).repeat(channels, 1, 1, 1)
    flat = x.reshape(len(x), -1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    spread = (flat.max(1).values - flat.min(1).values).view(-1, 1, 1, 1)
    filtered = F.conv2d((x - mean) / spread, kernel, padding=1, groups=channels) + 1e-3
    return 0.5 * torch.sign(filtered) + 0.5, 0.5 * torch.sigmoid(filtered) + 0.5


def test_halftone_matches_the_authors_per_image_normalization_forward_and_backward():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 10, 10) * torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)  # channels of different range
    upstream = torch.randn(4, 3, 10, 10)
    ours_in = x.clone().requires_grad_(True)
    out = Halftone(3)(ours_in)
    (out * upstream).sum().backward()
    theirs_in = x.clone().requires_grad_(True)
    hard, smooth = their_halftone_parts(theirs_in, 3)
    (smooth * upstream).sum().backward()
    assert torch.equal(out.detach(), hard.detach())
    torch.testing.assert_close(ours_in.grad, theirs_in.grad)


# ----------------------------------------------------------------------------- 3. ResNet activation placement
def their_block(block: BasicBlock, x: torch.Tensor, wbits: int, abits: int) -> torch.Tensor:
    """Their BasicBlock_Dorefa in eval mode, with the block's own parameters."""

    def conv(module, inp):
        return F.conv2d(inp, their_weight(module.weight, wbits), None, module.stride, module.padding)

    out = their_act(x, abits)
    out = their_act(F.relu(block.bn1(conv(block.conv1, out))), abits)
    out = block.bn2(conv(block.conv2, out))
    short = x if len(block.shortcut) == 0 else block.shortcut[1](conv(block.shortcut[0], x))
    return F.relu(out + short)


def their_resnet(net, x: torch.Tensor, wbits: int, abits: int) -> torch.Tensor:
    """Their ResNet_Dorefa forward: quantized first conv, blocks, quantized pooled features, full-precision linear."""
    out = F.relu(net.bn1(F.conv2d(x, their_weight(net.conv1.weight, wbits), None, 1, 1)))
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in layer:
            out = their_block(block, out, wbits, abits)
    out = their_act(F.adaptive_avg_pool2d(out, 1), abits).flatten(1)
    return F.linear(out, net.linear.weight, net.linear.bias)


def eval_net(spec: ModelSpec) -> nn.Module:
    """``spec``'s bare network in eval mode, with non-trivial BatchNorm statistics."""
    net = build_model(spec).net.eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("quant", ["FP-W2-A2", "FP-A4", "FP-W4"])
def test_dorefa_resnet_matches_the_authors_placement(quant):
    spec = ModelSpec.parse(f"digits/resnet18-w0.25/{quant}/sgd/s0")
    net = eval_net(spec)
    torch.manual_seed(1)
    x = torch.rand(3, 1, 8, 8) * 2
    ours_in, theirs_in = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = net(ours_in)
    theirs = their_resnet(net, theirs_in, spec.weight_bits, spec.act_bits)
    torch.testing.assert_close(ours, theirs)
    upstream = torch.randn_like(ours)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad)


# ----------------------------------------------------------------------------- 4. the VGG head
def test_vgg_head_is_dropout_linear_relu_twice_then_linear():
    net = build_model(ModelSpec.parse("cifar10/vgg11/FP/sgd/s0")).net
    layers = list(net.classifier)
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert (layers[1].in_features, layers[1].out_features) == (512, 512)
    assert (layers[4].in_features, layers[4].out_features) == (512, 512)
    assert (layers[6].in_features, layers[6].out_features) == (512, 10)
    assert layers[0].p == layers[3].p == 0.5  # the authors' dropout at CIFAR size


def test_digits_vgg_head_has_the_same_layers_without_dropout():
    """Dropout 0.5 on a quarter-width digits head left the preset VGG11-BN at 84% after its 20 epochs; the
    digits head keeps the authors' layers (and parameters) but drops nothing, and gets a fresh content key."""
    spec = ModelSpec.parse("digits/vgg11_bn-w0.25/FP/sgd/s0")
    layers = list(build_model(spec).net.classifier)
    assert [type(m) for m in layers] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert layers[0].p == layers[3].p == 0.0 and layers[1].out_features == 128
    assert spec.key != "be7443d1c2e69148"  # the dropout-head checkpoint (ARCH_REVISION 2) is not reused
    assert ModelSpec.parse("cifar10/vgg11/FP/sgd/s0").key == "bcb06e720dab15e9"  # CIFAR VGGs keep theirs


# ----------------------------------------------------------------------------- 6. EMPIR's vote timing
class Tiny(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x.flatten(1) * 4 - 2)


def their_empir(ensemble: MajorityVote, x, y, eps, steps, step):
    """Their EMPIR loop: the ensemble's prediction once at the start point, each member's at every step, the
    gradients of the members agreeing with the start prediction summed, a signed step, projection and clip."""
    x_nat, x_t = x.clone(), x.clone()
    members = list(ensemble.members)
    _, preds0 = member_gradients(members, x_t, y)
    start_pred = ensemble.decide(preds0, x_t)
    for _ in range(steps):
        grad = torch.zeros_like(x_t)
        for member in members:
            x_in = x_t.clone().requires_grad_(True)
            logits = member(x_in)
            loss = F.cross_entropy(logits, y, reduction="sum")
            (g,) = torch.autograd.grad(loss, x_in)
            agree = (logits.argmax(1) == start_pred).float().view(-1, 1, 1, 1)
            grad += g * agree
        x_t = x_t + step * grad.sign()
        x_t = torch.min(torch.max(x_t, x_nat - eps), x_nat + eps).clamp(0, 1)
    return x_t


def test_empir_compares_members_with_the_start_vote_like_the_authors():
    members = [Tiny(s) for s in range(3)]
    ensemble = MajorityVote(members, seed=0)
    torch.manual_seed(5)
    x, y = torch.rand(32, 1, 4, 4), torch.randint(0, 4, (32,))
    eps, steps, step = 0.3, 10, 0.05
    attack = EnsemblePGD("empir", eps=eps, steps=steps, step_size=step, random_start=False)
    ours = attack.perturb(ensemble, x, y, eps, None)
    theirs = their_empir(ensemble, x, y, eps, steps, step)
    torch.testing.assert_close(ours, theirs)
    per_step = EnsemblePGD("empir", eps=eps, steps=steps, step_size=step, random_start=False, empir_vote="step")
    assert not torch.equal(per_step.perturb(ensemble, x, y, eps, None), ours)  # the timing matters here
    with pytest.raises(TrendError):
        EnsemblePGD("empir", empir_vote="sometimes")


# ----------------------------------------------------------------------------- profile: vote ties
def their_vote(preds: torch.Tensor, chosen: torch.Tensor, classes: int) -> torch.Tensor:
    """Their Ensemble.forward: one-hot votes summed; where the top count is 1 (all disagree) a random member's
    vote; the decision is the first maximal class."""
    out = F.one_hot(preds, classes).sum(0).float()
    disagree = out.max(1).values == 1
    out[disagree] = F.one_hot(preds[chosen[disagree], torch.arange(preds.shape[1])[disagree]], classes).float()
    return out.argmax(1)


def test_authors_vote_breaks_only_all_disagree_ties_like_their_ensemble():
    torch.manual_seed(3)
    for members in (3, 4, 5):
        preds = torch.randint(0, 4, (members, 500))
        chosen = torch.randint(0, members, (500,))
        assert torch.equal(majority_vote(preds, chosen, 4, ties="all_disagree"), their_vote(preds, chosen, 4))
    # a 2-2 tie: the authors' vote takes the lower class, the paper's draws a member
    preds = torch.tensor([[0], [0], [3], [3]])
    assert int(majority_vote(preds, torch.tensor([2]), 4, ties="all_disagree")) == 0
    assert int(majority_vote(preds, torch.tensor([2]), 4, ties="any")) == 3
    # the exact expectation agrees with averaging the vote over every possible draw
    preds = torch.randint(0, 4, (4, 300))
    y = torch.randint(0, 4, (300,))
    mean = torch.stack(
        [(majority_vote(preds, torch.full((300,), k), 4, "all_disagree") == y).float() for k in range(4)]
    ).mean(0)
    torch.testing.assert_close(expected_correct(preds, y, "all_disagree"), mean)
    assert MajorityVote([Tiny(0), Tiny(1)], profile="authors").ties == "all_disagree"


# ----------------------------------------------------------------------------- profile: input quantization
def their_batch_quantise(data: torch.Tensor, bits: int) -> torch.Tensor:
    """Their Quantise2d on normalized data: bins from the whole batch's min and max, the max moved half a bin down."""
    bin_width = (data.max() - data.min()) / 2**bits
    data = torch.where(data == data.max(), data - 0.5 * bin_width, data)
    return torch.floor((data - data.min()) / bin_width) * bin_width + (0.5 * bin_width + data.min())


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_authors_profile_quantizes_inputs_with_batch_bounds_like_their_code(bits):
    torch.manual_seed(bits)
    x = torch.randn(6, 3, 8, 8)
    ours = InputQuantizer(bits, torch.zeros(3), torch.ones(3), per_batch=True)(x)
    torch.testing.assert_close(ours, their_batch_quantise(x, bits))
    model = build_model(ModelSpec.parse(f"digits/resnet18-w0.25/Q{bits}/sgd/s0/authors"))
    assert model.preprocess.quant.per_batch
    assert not build_model(ModelSpec.parse(f"digits/resnet18-w0.25/Q{bits}/sgd/s0")).preprocess.quant.per_batch


def test_authors_profile_normalizes_cifar_with_their_std():
    paper = build_model(ModelSpec.parse("cifar10/resnet18-w0.25/FP/sgd/s0")).preprocess
    authors = build_model(ModelSpec.parse("cifar10/resnet18-w0.25/FP/sgd/s0/authors")).preprocess
    assert torch.allclose(paper.std.flatten(), torch.tensor(get_info("cifar10").std))
    assert torch.allclose(authors.std.flatten(), torch.tensor([0.2023, 0.1994, 0.2010]))


# ----------------------------------------------------------------------------- profile: ensemble attacks, CW
def test_ensemble_attack_defaults_follow_the_profile():
    assert EnsemblePGD("agd").eps == pytest.approx(8 / 255)
    authors = EnsemblePGD("agd", profile="authors", steps=1, step_size=1e-9)
    assert authors.eps == pytest.approx(0.01)
    x = torch.full((64, 1, 4, 4), 0.5)
    start = authors.perturb(
        MajorityVote([Tiny(0)], profile="authors"),
        x,
        torch.zeros(64, dtype=torch.long),
        0.01,
        torch.Generator().manual_seed(0),
    )
    spread = float((start - x).abs().max())
    assert 0.009 < spread <= 0.01 + 1e-7  # a start drawn from U(-eps, eps), not from U(-step, step)


class Counting(nn.Module):
    """Counts forward passes of a fixed linear model."""

    def __init__(self):
        super().__init__()
        self.inner = Tiny(0)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("profile, iterations", [("paper", 20), ("authors", 11)])
def test_cw_abort_early_rule_follows_the_profile(profile, iterations):
    # a learning rate so small that the loss never moves: the first check that compares two losses aborts
    model = Counting()
    x = torch.rand(4, 1, 4, 4)
    y = model.inner(x).argmax(1)  # correctly classified: the margin term, so the loss, is positive
    attack = CarliniWagnerL2(steps=100, lr=1e-12, binary_search_steps=1, profile=profile)
    attack.perturb(model, x, y, None, None)
    # paper: checks after steps 10, 20, ... against 0.9999 x the previous (inf first); authors (advertorch):
    # checks at iterations 0, 10, ... against 0.999999 x the previous (1e6 first), so it stops at iteration 10
    assert model.calls == iterations


# ----------------------------------------------------------------------------- profile: training and TM(eps)
def test_authors_training_settings():
    info = get_info("digits")
    adam = ModelSpec.parse("digits/resnet18-w0.25/FP/adam/s0/authors")
    assert learning_rate(adam) == pytest.approx(1e-3)
    assert learning_rate(adam.replace(arch="vgg11_bn")) == pytest.approx(1e-4)
    assert learning_rate(adam.replace(lr=0.05)) == pytest.approx(0.05)  # an explicit rate wins
    assert learning_rate(adam.replace(profile="paper")) == pytest.approx(0.01)
    assert training_batch_size(adam, info) == 512
    assert training_batch_size(adam.replace(profile="paper"), info) == 64


def test_authors_tm_fit_points_and_f_ss():
    assert default_fit_eps("digits", profile="authors") == [0.02, 0.04, 0.06, 0.08]
    assert default_fit_eps("digits") != [0.02, 0.04, 0.06, 0.08]
    source, target = (build_model(ModelSpec.parse(f"digits/smallcnn/FP/sgd/s{s}")).eval() for s in (0, 1))
    torch.manual_seed(0)
    x = torch.rand(200, 1, 8, 8)
    with torch.no_grad():  # labels the source gets right; the target agrees on some of them
        y = source(x).argmax(1)
    paper = measure_tm(source, target, [0.3], data=(x, y), cache=False)
    authors = measure_tm(source, target, [0.3], data=(x, y), cache=False, profile="authors")
    assert int(authors["f_st"].iloc[0]) == int(paper["f_st"].iloc[0])
    # their f_ss: every adversarial image of the source, not only those the target also classifies correctly
    assert int(authors["f_ss"].iloc[0]) > int(paper["f_ss"].iloc[0]) > 0
    assert float(authors["tm"].iloc[0]) == pytest.approx(authors["f_st"].iloc[0] / authors["f_ss"].iloc[0])


# ----------------------------------------------------------------------------- the profile itself and spec names
def test_profiles_and_spec_names():
    assert PROFILES == ("paper", "authors")
    assert isinstance(get_profile("authors"), Profile) and get_profile("paper").name == "paper"
    with pytest.raises(TrendError, match="Unknown profile"):
        get_profile("bogus")
    spec = ModelSpec.parse("digits/resnet18-w0.25/Q2/sgd/s0/authors")
    assert spec.profile == "authors" and spec.name.endswith("/authors")
    assert ModelSpec.parse(spec.name) == spec
    plain = spec.replace(profile="paper")
    assert plain.name == "digits/resnet18-w0.25/Q2/sgd/s0" and plain.key != spec.key
    assert plain.key == "cdbc26737f35ba36"  # unchanged networks keep the keys (and checkpoints) they had
    assert ModelSpec.parse("digits/resnet18-w0.25/FP-W2/sgd/s0").key != "9edce0bbf586b6fe"  # fixed: new key
    with pytest.raises(TrendError):
        ModelSpec(profile="bogus")
