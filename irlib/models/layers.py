"""Building blocks shared by the host networks (ResNet basic blocks, CBAM, FCN head)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = False) -> nn.Sequential:
    """Convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=bias),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (two bias-free 3x3 convs); a 1x1 projection when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def set_reference_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set ``momentum`` on every BatchNorm of ``model`` except the two inside each
    :class:`BasicBlock`: BasicIRSTD's ACM/ALCNet pass ``momentum=0.9`` to their stem, downsample,
    fusion and head norms (MXNet's default, copied literally: in PyTorch it makes the running
    statistics follow the latest batches) while torchvision's BasicBlock keeps 0.1."""
    inside = {id(m) for blk in model.modules() if isinstance(blk, BasicBlock) for m in (blk.bn1, blk.bn2)}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and id(m) not in inside:
            m.momentum = momentum


def res_stage(in_ch: int, out_ch: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` basic blocks; the first one changes channels / stride."""
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride),
                         *[BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)])


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared bias-free MLP on average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, mid, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(mid, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        mx = self.mlp(x.amax((2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a bias-free 7x7 conv on the channel mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))


class ResCBAMBlock(nn.Module):
    """Residual block with CBAM (DNANet's and MSHNet's unit): 3x3 convs with bias, then CA, SA."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.ca = ChannelAttention(out_ch)
        self.sa = SpatialAttention()
        self.shortcut = None
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out * self.ca(out)
        out = out * self.sa(out)
        return self.relu(out + identity)


def cbam_stage(in_ch: int, out_ch: int, blocks: int = 1) -> nn.Sequential:
    """``blocks`` residual CBAM blocks; the first one changes the channel count."""
    return nn.Sequential(ResCBAMBlock(in_ch, out_ch), *[ResCBAMBlock(out_ch, out_ch) for _ in range(blocks - 1)])


class FCNHead(nn.Module):
    """FCN head of ACM/ALCNet: 3x3 conv to C/4, BN, ReLU, dropout 0.1, 1x1 conv to logits."""

    def __init__(self, in_ch: int, out_ch: int = 1) -> None:
        super().__init__()
        mid = in_ch // 4
        self.block = nn.Sequential(nn.Conv2d(in_ch, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid),
                                   nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Conv2d(mid, out_ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


def resnet_stem(in_ch: int, width: int) -> nn.Sequential:
    """ACM/ALCNet stem (stride 4): input BN, 3x3 s2 conv to ``width``, two 3x3 convs (last to
    2 x width), max pool 3x3 s2."""
    return nn.Sequential(nn.BatchNorm2d(in_ch), conv_bn_relu(in_ch, width, 3, 2),
                         conv_bn_relu(width, width), conv_bn_relu(width, 2 * width),
                         nn.MaxPool2d(3, 2, 1))
