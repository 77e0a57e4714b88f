"""Habitat-centroid bundles (kind ``habitats``): population habitats frozen at training time.

The centroids file (format ``oncohabitat.habitat-centroids``, read by :mod:`oncohabitat.regions.frozen`) is
listed under ``files``. A region profile points at it relative to the bundle root, e.g.
``{"file": "habitats/<id>/<version>/centroids.json", "sha256": "..."}``, so the regions service finds it with
``ONCOHABITAT_REGIONS_MODELS_DIR`` set to the bundle root.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from oncohabitat.bundles.manifest import ManifestBase, NonEmptyStr, RelativePath


class HabitatsManifest(ManifestBase):
    """``manifest.json`` of a habitat-centroid bundle: K habitats over the named per-voxel parameters."""

    kind: Literal["habitats"]
    centroids_file: RelativePath
    k: int = Field(ge=2, le=9)
    #: Per-voxel kinetic parameters the centroids live in, e.g. ``["WIS", "WOS", "SER", "PE"]``.
    parameters: list[NonEmptyStr] = Field(min_length=1)

    @model_validator(mode="after")
    def _listed(self) -> HabitatsManifest:
        if self.centroids_file not in self.files:
            raise ValueError(f"centroids file {self.centroids_file!r} is not listed under files")
        return self
