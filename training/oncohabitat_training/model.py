"""A small 3D U-Net (Ronneberger et al. 2015, Cicek et al. 2016) for binary tumour segmentation.

Input (batch, channels, z, y, x) float32; every spatial size must be a multiple of ``2 ** (levels - 1)``.
:class:`UNet3d` returns logits; :class:`ProbabilityHead` wraps it with a sigmoid for export. No
normalisation layers: the network's output for a voxel does not depend on the other patches of a batch, so
sliding-window inference and training see the same function.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1),
        nn.LeakyReLU(0.01, inplace=True),
    )


class UNet3d(nn.Module):
    """U-Net with ``levels`` resolutions and ``base * 2**level`` feature maps per level."""

    def __init__(self, in_channels: int = 2, base: int = 8, levels: int = 3) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError("a U-Net needs at least two levels")
        widths = [base * 2**level for level in range(levels)]
        self.levels = levels
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(_block(previous, width))
            previous = width
        self.pool = nn.MaxPool3d(2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose3d(width * 2, width, kernel_size=2, stride=2))
            self.decoders.append(_block(width * 2, width))
        self.head = nn.Conv3d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 1, z, y, x)."""
        skips = []
        for depth, encoder in enumerate(self.encoders):
            x = encoder(x if depth == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for upsample, decoder in zip(self.upsamplers, self.decoders, strict=True):
            x = decoder(torch.cat([upsample(x), skips.pop()], dim=1))
        logits: torch.Tensor = self.head(x)
        return logits


class ProbabilityHead(nn.Module):
    """``sigmoid(net(x))``: the function exported to ONNX (tumour probability per voxel)."""

    def __init__(self, net: UNet3d) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (batch, 1, z, y, x) in [0, 1]."""
        return torch.sigmoid(self.net(x))
