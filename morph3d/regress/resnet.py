"""A plain ResNet-50 (He et al. 2016, the "v1.5" variant with the stride on the 3 x 3 convolution), written
without torchvision. Its state-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer4.2.bn3``, ``fc``), so checkpoints of torchvision ResNet-50s load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

RESNET50_LAYERS = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 (width) - 3x3 (width, stride) - 1x1 (4 x width), BatchNorm after each, residual shortcut
    (a strided 1x1 convolution + BatchNorm, ``downsample``, when the shape changes)."""

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """images (B, 3, H, W) -> pooled features (B, 2048, 1, 1), or (B, num_classes) logits when
    ``num_classes`` is given (a final ``fc`` layer, as torchvision's classifier)."""

    def __init__(self, num_classes: int | None = None, layers=RESNET50_LAYERS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (blocks, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            stage = []
            for k in range(blocks):
                stage.append(Bottleneck(cin, width, 2 if (k == 0 and i > 0) else 1))
                cin = width * EXPANSION
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = None if num_classes is None else nn.Linear(cin, num_classes)
        self.out_channels = cin

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return x if self.fc is None else self.fc(torch.flatten(x, 1))


__all__ = ["Bottleneck", "RESNET50_LAYERS", "ResNet50"]
