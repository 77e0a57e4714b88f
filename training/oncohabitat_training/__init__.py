"""Training recipes for OncoHabitat segmentation bundles (separate distribution ``oncohabitat-training``).

* :mod:`.cohort` — a labelled NIfTI cohort laid out like MAMA-MIA (images per case and phase + expert masks);
* :mod:`.phantom_cohort` — writes synthetic phantom studies (:mod:`oncohabitat.phantom`) in that layout;
* :mod:`.dataset` — cases -> network inputs with the service's own preprocessing, and patch sampling;
* :mod:`.model` — a small 3D U-Net; :mod:`.train` — the training loop;
* :mod:`.export` — ONNX export checked against torch, and the segmentation bundle;
* :mod:`.cli` — ``oncohabitat-train`` (``python -m oncohabitat_training``).
"""

__version__ = "0.1.0"
