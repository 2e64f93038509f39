"""Networks: CIFAR-style ResNets and VGGs with a width multiplier, a small CNN for digits, and torchvision's
ImageNet models. All are built from plain layers; ``quantize_network`` turns them into DoReFa W/A versions.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from trend_core.config.architectures import AUTHORS_IMAGE_SIZE, PLAIN_VGGS
from trend_core.errors import TrendError
from trend_core.nn.quant import FULL_PRECISION_BITS, QConv2d, QLinear, QReLU, dorefa_weight
from trend_core.nn.registry import register_arch


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


# ----------------------------------------------------------------------------- CIFAR ResNets
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.input_quant: nn.Module | None = None  # DoReFa: quantizes the conv path's input (set by quantize_network)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.input_quant is None else self.input_quant(x)  # the shortcut keeps x at full precision
        out = self.relu1(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu3 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
            )
        self.input_quant: nn.Module | None = None  # as in BasicBlock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.input_quant is None else self.input_quant(x)
        out = self.relu1(self.bn1(self.conv1(out)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stem, no max-pool, four stages, global average pool."""

    def __init__(self, block, num_blocks, num_classes: int, in_channels: int, width: float):
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.in_planes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(block, planes[0], num_blocks[0], 1)
        self.layer2 = self._make_layer(block, planes[1], num_blocks[1], 2)
        self.layer3 = self._make_layer(block, planes[2], num_blocks[2], 2)
        self.layer4 = self._make_layer(block, planes[3], num_blocks[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_quant: nn.Module | None = None  # DoReFa: quantizes the pooled features (quantize_network)
        self.linear = nn.Linear(planes[3] * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, count: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (count - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.pool(self.layer4(self.layer3(self.layer2(self.layer1(out)))))
        if self.feature_quant is not None:
            out = self.feature_quant(out)
        return self.linear(torch.flatten(out, 1))


_RESNET_DEPTHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


def _register_resnet(name: str) -> None:
    block, blocks = _RESNET_DEPTHS[name]

    @register_arch(name)
    def build(num_classes, in_channels, image_size, width, pretrained=False):
        return CifarResNet(block, blocks, num_classes, in_channels, width)


for _name in _RESNET_DEPTHS:
    _register_resnet(_name)


# ----------------------------------------------------------------------------- CIFAR VGGs
_VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


HEAD_DROPOUT = 0.5  # the authors' VGG head dropout (CIFAR-size images and larger)
assert tuple(_VGG_CONFIGS) == PLAIN_VGGS  # one VGG config per name the catalogue lists


def _small_maps(batch_norm: bool, image_size: int) -> bool:
    return not batch_norm and image_size < AUTHORS_IMAGE_SIZE


class CifarVGG(nn.Module):
    """VGG for small images: the TREND authors' CIFAR VGG, with rules for images smaller than CIFAR's 32x32.

    The head is the authors' CIFAR VGG head: (Dropout, Linear(512, 512), ReLU) twice, then the last Linear (512
    scaled by the width multiplier). At 32x32 and larger every layer, max-pool and initialization is the authors'
    (He init by fan-out on the convs, zero conv bias, PyTorch's default on the linears). Below 32x32 (digits, 8x8):

    - the two Dropouts keep no units dropped (p=0): same layers and parameters, but the authors' p=0.5 on a
      quarter-width (128-unit) head made the digits VGG11-BN converge too slowly for its 20 epochs (84% test
      accuracy instead of 97%);
    - max-pools that would shrink the map below 1x1 are left out, and in the BatchNorm-free VGGs also those that
      would shrink it below 2x2, with every conv and linear layer He-initialized by its fan-in (zero bias).
      The authors' fan-out init on 8x8 digits, where four convs run on 1x1 maps, shrank the activations' spread
      from 0.33 to 0.002 before the head, so the logits did not depend on the input and VGG11/VGG19 stayed at 10%.
      A 3x3 conv on a small zero-padded map sees fewer than 9 taps per input channel (4 on a 2x2 map), so its
      fan-in counts only the taps inside the map; the logit layer, which no ReLU follows, gets gain 1.
    """

    def __init__(self, config, num_classes: int, in_channels: int, image_size: int, width: float, batch_norm: bool):
        super().__init__()
        small_maps = _small_maps(batch_norm, image_size)
        smallest_map = 2 if small_maps else 1
        layers: list[nn.Module] = []
        map_sizes: dict[nn.Conv2d, int] = {}  # each conv's input map size (for the small-map init)
        channels, size = in_channels, image_size
        for item in config:
            if item == "M":
                if size // 2 >= smallest_map:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = scaled(item, width)
            conv = nn.Conv2d(channels, out, 3, padding=1, bias=not batch_norm)
            map_sizes[conv] = size
            layers.append(conv)
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        hidden = scaled(512, width)
        # The authors' dropout (0.5) for CIFAR/ImageNet-size inputs; none for digits (see the docstring, README).
        drop = HEAD_DROPOUT if image_size >= AUTHORS_IMAGE_SIZE else 0.0
        self.classifier = nn.Sequential(
            nn.Dropout(drop),
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Dropout(drop),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.small_maps = small_maps
        if small_maps:
            _init_for_small_maps(map_sizes, self.classifier)
        else:
            _init_as_the_authors(map_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _init_as_the_authors(convs: Iterable[nn.Conv2d]) -> None:
    """The authors' VGG init: He (fan-out) normal conv weights, zero conv bias; linears keep PyTorch's default."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)


def _init_for_small_maps(map_sizes: dict[nn.Conv2d, int], classifier: nn.Sequential) -> None:
    """He (fan-in) normal weights and zero bias on every layer, counting only a conv's taps that fall inside its
    zero-padded input map: a 3x3 kernel on an s x s map covers (3s - 2)^2 of its 9 s^2 tap positions."""
    for conv, size in map_sizes.items():
        taps = ((3 * size - 2) / size) ** 2
        _he_normal(conv, conv.in_channels * taps, gain=2.0)
    linears = [m for m in classifier if isinstance(m, nn.Linear)]
    for linear in linears[:-1]:
        _he_normal(linear, linear.in_features, gain=2.0)
    _he_normal(linears[-1], linears[-1].in_features, gain=1.0)  # the logits: no ReLU follows


def _he_normal(layer: nn.Conv2d | nn.Linear, fan_in: float, gain: float) -> None:
    with torch.no_grad():
        layer.weight.normal_(0.0, (gain / fan_in) ** 0.5)
        if layer.bias is not None:
            layer.bias.zero_()


def _register_vgg(name: str, batch_norm: bool) -> None:
    config = _VGG_CONFIGS[name]

    @register_arch(name + ("_bn" if batch_norm else ""))
    def build(num_classes, in_channels, image_size, width, pretrained=False):
        return CifarVGG(config, num_classes, in_channels, image_size, width, batch_norm)


for _name in _VGG_CONFIGS:
    _register_vgg(_name, False)
    _register_vgg(_name, True)


# ----------------------------------------------------------------------------- small CNN
class SmallCNN(nn.Module):
    """Two conv blocks and a linear head: the quickest model for 8x8 digits."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float):
        super().__init__()
        c1, c2 = scaled(32, width), scaled(64, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Linear(c2 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_arch("smallcnn")
def _build_small_cnn(num_classes, in_channels, image_size, width, pretrained=False):
    return SmallCNN(num_classes, in_channels, image_size, width)


# ----------------------------------------------------------------------------- torchvision ImageNet models
_TORCHVISION = {
    "tv_resnet18": ("resnet18", "ResNet18_Weights"),
    "tv_resnet34": ("resnet34", "ResNet34_Weights"),
    "tv_resnet101": ("resnet101", "ResNet101_Weights"),
    "tv_vgg11": ("vgg11", "VGG11_Weights"),
    "tv_vgg19": ("vgg19", "VGG19_Weights"),
    "tv_densenet121": ("densenet121", "DenseNet121_Weights"),
    "tv_wide_resnet50_2": ("wide_resnet50_2", "Wide_ResNet50_2_Weights"),
}


def _register_torchvision(name: str) -> None:
    factory, weights_enum = _TORCHVISION[name]

    @register_arch(name, datasets=("imagenet",))
    def build(num_classes, in_channels, image_size, width, pretrained=False):
        import torchvision.models as tvm  # local: torchvision takes seconds to import; only its models need it

        if width != 1.0:
            raise TrendError(f"{name} comes from torchvision and has no width multiplier; use width 1.")
        weights = getattr(tvm, weights_enum).DEFAULT if pretrained else None
        try:
            net = getattr(tvm, factory)(weights=weights, num_classes=num_classes if weights is None else 1000)
        except (OSError, RuntimeError) as exc:  # no network or a broken download
            raise TrendError(
                f"Could not load torchvision's pretrained {factory} weights ({exc.__class__.__name__}); "
                "put them in the torch hub cache ($TORCH_HOME/hub/checkpoints) or train without --pretrained."
            ) from None
        return net

    build.torchvision_factory = factory


for _name in _TORCHVISION:
    _register_torchvision(_name)


# ----------------------------------------------------------------------------- W/A quantization surgery
def quantize_network(net: nn.Module, weight_bits: int, act_bits: int) -> nn.Module:
    """Turn a plain network into its DoReFa version in place; state-dict keys are unchanged.

    Weights: every Conv2d/Linear but the first conv and the last linear gets ``weight_bits`` (CIFAR ResNets: every
    convolution, the first one and the shortcuts included; the final linear stays full precision). Activations
    follow the TREND authors' placement per family: ``_quantize_resnet``, ``_quantize_vgg``; other networks (the
    small CNN) get ``act_bits`` on every ReLU. BatchNorm-free VGGs on images under 32x32 keep their init's weight
    spread through the quantizer (``_keep_he_spread``).
    """
    if weight_bits >= FULL_PRECISION_BITS and act_bits >= FULL_PRECISION_BITS:
        return net
    if isinstance(net, CifarResNet):
        return _quantize_resnet(net, weight_bits, act_bits)
    weighted = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _quantize_weights(weighted[1:-1], weight_bits)
    if isinstance(net, CifarVGG) and net.small_maps and weight_bits < FULL_PRECISION_BITS:
        _keep_he_spread(weighted[1:-1])
    if act_bits >= FULL_PRECISION_BITS:
        return net
    if isinstance(net, CifarVGG):
        return _quantize_vgg(net, act_bits)
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, child_name, QReLU(act_bits))
    return net


def _quantize_weights(modules: list[nn.Module], weight_bits: int) -> None:
    """Give each Conv2d/Linear in ``modules`` DoReFa weights of ``weight_bits`` (none at full precision)."""
    if weight_bits >= FULL_PRECISION_BITS:
        return
    for module in modules:
        module.__class__ = QConv2d if isinstance(module, nn.Conv2d) else QLinear
        module.weight_bits = weight_bits


def _keep_he_spread(layers: list[nn.Module]) -> None:
    """Scale DoReFa layers' (full-precision shadow) weights so that the quantized weights they compute with have
    the spread the small-map init gave the weights. DoReFa's levels run to max|tanh w|, so most weights land on
    larger values: the spread grew 1.3-1.6x per layer at 2 bits and 3.7-4.7x at 1 bit, which over a BatchNorm-free
    VGG made the digits loss NaN from the first epoch."""
    with torch.no_grad():
        for layer in layers:
            target = float(layer.weight.std())
            for _ in range(4):  # tanh makes the quantized spread nearly, not exactly, proportional to the scale
                layer.weight.mul_(target / float(dorefa_weight(layer.weight, layer.weight_bits).std()))


def _quantize_resnet(net: CifarResNet, weight_bits: int, act_bits: int) -> nn.Module:
    """The authors' DoReFa ResNet (see ``quantize_network``)."""
    _quantize_weights([m for m in net.modules() if isinstance(m, nn.Conv2d)], weight_bits)
    if act_bits < FULL_PRECISION_BITS:
        for block in net.modules():
            if isinstance(block, (BasicBlock, Bottleneck)):
                block.input_quant = QReLU(act_bits)  # inputs are ReLU outputs: clamp-and-round is all it does
                inner = ("relu1",) if isinstance(block, BasicBlock) else ("relu1", "relu2")
                for name in inner:
                    setattr(block, name, QReLU(act_bits))
        net.feature_quant = QReLU(act_bits)
    return net


def _quantize_vgg(net: CifarVGG, act_bits: int) -> nn.Module:
    """The authors' DoReFa VGG activations: the input of every conv but the first and of every linear but the last
    is quantized, so the quantizer comes after a max-pool (not before it) and the last linear's input stays full
    precision; in the head it comes after the Dropout. It is appended to the parameter-free layer in front (ReLU,
    max-pool or Dropout), which keeps the state-dict keys of the plain network."""
    for stack in (net.features, net.classifier):
        weighted = [i for i, m in enumerate(stack) if isinstance(m, (nn.Conv2d, nn.Linear))]
        inner = weighted[1:] if stack is net.features else weighted[:-1]
        for index in inner:
            stack[index - 1] = nn.Sequential(stack[index - 1], QReLU(act_bits))
    return net
