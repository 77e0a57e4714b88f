"""MSI matrix and features on hand-computed toy maps."""

from __future__ import annotations

import numpy as np
import pytest

from oncohabitat.regions.msi import msi_features, msi_matrix, neighbour_offsets

# One slice, labels 1 2 / 3 0 (0 = outside the tumour); everything beyond the array is outside too.
TOY = np.array([[[1, 2], [3, 0]]])
VOXEL_MM3 = 0.5


def test_toy_matrix_counted_by_hand() -> None:
    # In-plane 8-neighbourhood. Voxel "1" (top left) sees 2 (right), 3 (below) and 6 outside neighbours
    # (3 above, left, below-left beyond the array, below-right = the 0 voxel); same pattern for "2" and "3".
    expected = np.array(
        [
            [0, 6, 6, 6],  # row 0 mirrored from column 0, M[0, 0] = 0
            [6, 0, 1, 1],
            [6, 1, 0, 1],
            [6, 1, 1, 0],
        ]
    )
    np.testing.assert_array_equal(msi_matrix(TOY, 3, "2d-8"), expected)
    # 4-neighbourhood: "1" sees 2, 3 and 2 outside; "2" sees 1 and 3 outside; "3" sees 1 and 3 outside
    expected_4 = np.array([[0, 2, 3, 3], [2, 0, 1, 1], [3, 1, 0, 0], [3, 1, 0, 0]])
    np.testing.assert_array_equal(msi_matrix(TOY, 3, "2d-4"), expected_4)


def test_toy_features_computed_by_hand() -> None:
    features = msi_features(msi_matrix(TOY, 3, "2d-8"), VOXEL_MM3)
    total = 42.0  # row 0: 3 x 6, rows 1..3: 3 x 8
    # GLCM on P = M / 42 with i, j = 0..3
    assert features["msi_contrast"] == pytest.approx((2 * 6 * (1 + 4 + 9) + 2 * (1 + 4 + 1)) / total)
    assert features["msi_homogeneity"] == pytest.approx((12 / 2 + 12 / 3 + 12 / 4 + 2 / 2 + 2 / 3 + 2 / 2) / total)
    assert features["msi_energy"] == pytest.approx((6 * 36 + 6 * 1) / total**2)
    # marginals 18, 8, 8, 8 (/42): mu = 48/42, E[i^2] = 112/42, E[ij] = 22/42 -> corr = -1380 / 2400
    assert features["msi_correlation"] == pytest.approx(-1380.0 / 2400.0)
    for i in (1, 2, 3):
        assert features[f"msi_count_{i}_{i}"] == 0.0
        assert features[f"msi_norm_{i}_{i}"] == 0.0
        assert features[f"msi_count_0_{i}"] == pytest.approx(6 * VOXEL_MM3)
        assert features[f"msi_norm_0_{i}"] == pytest.approx(6 / total)
    for pair in ("1_2", "1_3", "2_3"):
        assert features[f"msi_count_{pair}"] == pytest.approx(1 * VOXEL_MM3)
        assert features[f"msi_norm_{pair}"] == pytest.approx(1 / total)


def test_feature_names_for_k3_are_the_22_stable_names() -> None:
    labels = np.zeros((2, 6, 6), dtype=np.uint8)
    labels[:, 1:5, 1:3] = 1
    labels[:, 1:3, 3:5] = 2
    labels[:, 3:5, 3:5] = 3
    names = list(msi_features(msi_matrix(labels, 3), 1.0))
    cells = ["1_1", "2_2", "3_3", "0_1", "0_2", "0_3", "1_2", "1_3", "2_3"]
    expected = ["msi_contrast", "msi_homogeneity", "msi_correlation", "msi_energy"]
    expected += [f"msi_count_{c}" for c in cells] + [f"msi_norm_{c}" for c in cells]
    assert names == expected and len(names) == 22


def test_matrix_is_symmetric_and_3d_neighbourhoods_see_other_slices() -> None:
    labels = np.zeros((3, 4, 4), dtype=np.uint8)
    labels[0, 1:3, 1:3] = 1
    labels[1, 1:3, 1:3] = 2
    in_plane = msi_matrix(labels, 2, "2d-8")
    full = msi_matrix(labels, 2, "3d-26")
    assert in_plane[1, 2] == 0  # no in-plane contact between the two slices
    assert full[1, 2] > 0 and full[1, 2] == full[2, 1]
    np.testing.assert_array_equal(full, full.T)
    assert [len(neighbour_offsets(n)) for n in ("2d-4", "2d-8", "3d-6", "3d-18", "3d-26")] == [4, 8, 6, 18, 26]


def test_empty_map_gives_no_features_and_correlation_is_omitted_when_undefined() -> None:
    assert msi_features(msi_matrix(np.zeros((1, 3, 3), dtype=np.uint8), 3), 1.0) == {}
    degenerate = np.zeros((4, 4), dtype=np.int64)
    degenerate[1, 1] = 8  # a single cell: both marginal variances are 0
    features = msi_features(degenerate, 1.0)
    assert "msi_correlation" not in features
    assert features["msi_energy"] == 1.0 and features["msi_count_1_1"] == 8.0


def test_same_habitat_pairs_fill_the_diagonal() -> None:
    # two horizontally adjacent voxels of habitat 1: each sees the other once and 7 outside neighbours
    matrix = msi_matrix(np.array([[[1, 1]]]), 1, "2d-8")
    np.testing.assert_array_equal(matrix, [[0, 14], [14, 2]])
    features = msi_features(matrix, 2.0)
    assert features["msi_count_1_1"] == 4.0 and features["msi_count_0_1"] == 28.0
    assert features["msi_norm_1_1"] == pytest.approx(2 / 30) and features["msi_norm_0_1"] == pytest.approx(14 / 30)
