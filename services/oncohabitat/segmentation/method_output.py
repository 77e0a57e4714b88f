"""What a segmentation method hands back before the common checks of :mod:`.quality` are applied."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from oncohabitat.segmentation.quality import Verdict


@dataclass(frozen=True)
class MethodOutput:
    """A method's mask (bool, z, y, x, reference grid), its confidence (0-1) and, when the method itself
    already decided the outcome (e.g. MULTIPLE_LESIONS, NO_LESION), that verdict; ``details`` are
    method parameters recorded (hashed) in the provenance.
    """

    mask: npt.NDArray[np.bool_]
    confidence: float
    verdict: Verdict | None = None
    details: dict[str, object] = field(default_factory=dict)
