"""Training loop of the 3D U-Net: Adam, BCE (soft targets) + soft Dice (binarised targets) on random patches,
fixed number of iterations (CPU)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional

from oncohabitat_training.dataset import PatchSampler, PreparedCase
from oncohabitat_training.model import UNet3d

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; ``patch_size`` is (z, y, x) voxels of the target grid (multiples of 4 for 3 levels)."""

    iterations: int = 800
    batch_size: int = 4
    patch_size: tuple[int, int, int] = (48, 48, 48)
    learning_rate: float = 2e-3
    lesion_fraction: float = 0.6
    base_channels: int = 8
    levels: int = 3
    seed: int = 0
    threads: int = 2

    def as_json(self) -> dict[str, object]:
        """JSON-friendly copy (recorded in the bundle manifest)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TrainResult:
    """The trained network (eval mode), final mean loss over the last 50 iterations and wall time (s)."""

    net: UNet3d
    final_loss: float
    seconds: float


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice over the whole batch (stable when patches hold no tumour)."""
    probability = torch.sigmoid(logits)
    intersection = (probability * target).sum()
    return 1.0 - (2.0 * intersection + 1.0) / (probability.sum() + target.sum() + 1.0)


def train(cases: list[PreparedCase], channels: int, config: TrainConfig, init: UNet3d | None = None) -> TrainResult:
    """Train a fresh :class:`UNet3d` (or continue ``init``) on ``cases``; deterministic for a config and data."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    net = init if init is not None else UNet3d(channels, config.base_channels, config.levels)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.iterations)
    sampler = PatchSampler(cases, config.patch_size, config.lesion_fraction, config.seed)
    started = time.perf_counter()
    recent: list[float] = []
    net.train()
    for iteration in range(1, config.iterations + 1):
        x, y = sampler.batch(config.batch_size)
        inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
        optimiser.zero_grad()
        logits = net(inputs)
        # BCE against the soft (partial-volume) target keeps probabilities calibrated; the Dice term uses the
        # target binarised at 0.5, the service's threshold (a soft-target Dice would inflate boundaries).
        loss = functional.binary_cross_entropy_with_logits(logits, targets) + soft_dice_loss(
            logits, (targets >= 0.5).float()
        )
        loss.backward()
        optimiser.step()
        schedule.step()
        recent = [*recent[-49:], float(loss.detach())]
        if iteration % 50 == 0 or iteration == config.iterations:
            logger.info("iteration %d/%d loss %.4f", iteration, config.iterations, float(np.mean(recent)))
    net.eval()
    return TrainResult(net=net, final_loss=float(np.mean(recent)), seconds=time.perf_counter() - started)
