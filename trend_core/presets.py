"""Named sets of model specs the zoo can build in one go (``trend zoo preset NAME``, the overview's button).

Plain names only, no torch: the CLI lists the presets in ``trend --help`` without importing PyTorch.
"""

from __future__ import annotations

PRESETS = {
    "digits": [
        "digits/resnet18-w0.25/FP/sgd/s0",
        "digits/resnet18-w0.25/Q8/sgd/s0",
        "digits/resnet18-w0.25/Q4/sgd/s0",
        "digits/resnet18-w0.25/Q2/sgd/s0",
        "digits/resnet18-w0.25/Q1/sgd/s0",
        "digits/resnet18-w0.25/HT/sgd/s0",
        "digits/resnet18-w0.25/FP-W2/sgd/s0",
        "digits/resnet18-w0.25/FP-A2/sgd/s0",
        "digits/vgg11_bn-w0.25/FP/sgd/s0",
        "digits/resnet18-w0.25/FP/adam/s0",
        "digits/resnet18-w0.25/FP/sgd/s1",
        "digits/resnet18-w0.25/FP/sgd/s2",
    ],
}
