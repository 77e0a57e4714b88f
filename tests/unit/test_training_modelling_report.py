"""The offline HTML evaluation report: every referenced image exists beside it and is a valid PNG."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from oncohabitat_training.modelling.cutoffs import time_dependent_roc
from oncohabitat_training.modelling.data import survival_from_table
from oncohabitat_training.modelling.evaluation import evaluate_classifier, evaluate_survival
from oncohabitat_training.modelling.report import EvaluationReport, write_report
from oncohabitat_training.modelling.signature import fit_cox_signature
from oncohabitat_training.modelling.synthetic import BINARY_COLUMN, EVENT_COLUMN, TIME_COLUMN, planted_cohort

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path: Path) -> None:
    """Signature, IHDR first, every chunk's CRC correct, IEND last, non-empty image."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = planted_cohort(300, seed=11)
    features = [c for c in table.columns if "/" in c][:12]
    train, validation = table.iloc[:200], table.iloc[200:]
    y_train = survival_from_table(train, TIME_COLUMN, EVENT_COLUMN)
    y_val = survival_from_table(validation, TIME_COLUMN, EVENT_COLUMN)
    sig = fit_cox_signature(train, features, y_train, seed=11, n_folds=5)
    cutoff = time_dependent_roc(y_train, y_train, sig.score(train), 36.0).youden_cutoff
    evaluations = [
        evaluate_survival(
            name,
            y_train,
            y,
            sig.score(rows),
            cutoff=cutoff,
            horizon=36.0,
            seed=11,
            event_prob=1.0 - sig.survival_at(rows, 36.0),
            n_boot=20,
        )
        for name, rows, y in (("training", train, y_train), ("validation", validation, y_val))
    ]
    probability = 1.0 / (1.0 + np.exp(-sig.score(validation)))
    evaluations.append(
        evaluate_classifier("validation pCR", validation[BINARY_COLUMN], probability, cutoff=0.5, seed=11, n_boot=20)
    )
    report = EvaluationReport(
        title="Planted-signal LASSO-Cox <demo>",
        evaluations=evaluations,
        coefficients=sig.coefficients,
        notes={"recipe": "seed000-style", "training data": "synthetic, not for clinical use"},
    )
    out = tmp_path_factory.mktemp("report")
    write_report(report, out)
    return out


def test_training_modelling_report_images_exist_and_are_png(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 1 + 2 * 4 + 3  # coefficients, 2 survival sets x 4, classifier x 3
    for src in sources:
        assert not src.startswith(("/", "http:", "https:"))  # relative: opens offline from the folder
        assert_valid_png(report_dir / src)
    assert "&lt;demo&gt;" in page  # text is escaped
    assert "Harrell" in page and "DeLong" in page and "log-rank" in page


def test_training_modelling_report_figures_are_reproducible(report_dir: Path, tmp_path: Path) -> None:
    import pandas as pd

    from oncohabitat_training.modelling.figures import coefficients_figure, save_png
    from oncohabitat_training.modelling.synthetic import SIGNAL_FEATURES

    coef = pd.Series([0.7, -0.6], index=list(SIGNAL_FEATURES))
    a = save_png(coefficients_figure(coef), tmp_path / "a.png").read_bytes()
    b = save_png(coefficients_figure(coef), tmp_path / "b.png").read_bytes()
    assert a == b
