"""Segmentation service: tumour mask on the reference phase's grid, its method, QC numbers and provenance.

Methods, in order of precedence: a supplied mask is passed through (:mod:`.supplied`, ``supplied-<source>``);
a seed point selects seeded spatial fuzzy c-means (:mod:`.seeded`, :mod:`.fcm`, ``seeded-fcm``); otherwise the
profile's ONNX bundle runs (:mod:`.automatic`, ``onnx``). Failed checks (:mod:`.quality`) are outcomes with a
reason, never substitute masks. Profiles and bundles: :mod:`.profiles`, :mod:`.model_bundle`.
"""
