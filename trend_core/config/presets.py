"""Named sets of model specs the zoo can build in one go (``trend zoo preset NAME``, the overview's button).

Plain names only, no torch: the CLI lists the presets in ``trend --help`` without importing PyTorch.
"""

from __future__ import annotations

# The paper's twelve roles on one base network: FP, input quantization (Q8, Q4, Q2, Q1, halftoning), 2-bit
# weights, 2-bit activations, a VGG11-BN, Adam, and two more seeds.
_ROLES = (
    "{base}/FP/sgd/s0",
    "{base}/Q8/sgd/s0",
    "{base}/Q4/sgd/s0",
    "{base}/Q2/sgd/s0",
    "{base}/Q1/sgd/s0",
    "{base}/HT/sgd/s0",
    "{base}/FP-W2/sgd/s0",
    "{base}/FP-A2/sgd/s0",
    "{vgg}/FP/sgd/s0",
    "{base}/FP/adam/s0",
    "{base}/FP/sgd/s1",
    "{base}/FP/sgd/s2",
)


def _preset(base: str, vgg: str) -> list[str]:
    return [role.format(base=base, vgg=vgg) for role in _ROLES]


PRESETS = {
    # quarter-width nets on 8x8 digits, 20 epochs: about 1.5 minutes on an idle 2-core CPU
    "digits": _preset("digits/resnet18-w0.25", "digits/vgg11_bn-w0.25"),
    # eighth-width nets on 28x28 MNIST, 8 epochs (the dataset's default): see the README's MNIST section
    "mnist": _preset("mnist/resnet18-w0.125", "mnist/vgg11_bn-w0.125"),
}

# The quick demo zoo (the overview's one-click button, the browser test, `trend reproduce --scale mini` on digits):
# FP, Q2 and Q1 of the digits preset trained for a few epochs, seconds in all.
DEMO_ROLES = ("FP", "Q2", "Q1")
DEMO_EPOCHS = 4
QUICK_DEMO = tuple(f"digits/resnet18-w0.25/{role}/sgd/s0/e{DEMO_EPOCHS}" for role in DEMO_ROLES)
