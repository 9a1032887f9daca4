"""Judge forecasts against the filter oracle: the gap to the best achievable accuracy.

Reads the judge-only truth, so it runs after training and never feeds it:
``python -m reprolab.validate.judge`` writes ``metrics/train/mamba/oracle_gap.json``.

Two views, both on exactly the same test windows (paired):
* realised accuracy minus the oracle's realised accuracy (carries label noise, ~1 point at
  2,500 windows);
* expected accuracy of each decision rule under the oracle's probabilities, minus the
  oracle's own (no label noise: E[1{pred = y}] = p if pred is up else 1 - p).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.errors import DataQualityError, PipelineError
from reprolab.core.io import read_parquet, write_json

MODEL_DIR = paths.model_dir("mamba")


def oracle_gap(predictions: pd.DataFrame, labels: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Accuracy gaps of ``predictions`` (symbol, date, probability) to the filter oracle."""
    joined = labels.merge(predictions, on=["symbol", "date"], how="inner", validate="one_to_one")
    joined = joined.merge(truth, on=["symbol", "date"], how="left", validate="one_to_one")
    if len(joined) != len(labels) or joined["oracle_p_up"].isna().any():
        raise DataQualityError("oracle gap: predictions or truth do not cover every test window")
    y = joined["label"].to_numpy().astype(bool)
    up = joined["probability"].to_numpy() > 0.5
    p = joined["oracle_p_up"].to_numpy()
    oracle_up = p > 0.5
    expected = np.where(up, p, 1 - p).mean()
    oracle_expected = np.where(oracle_up, p, 1 - p).mean()
    return {
        "windows": len(joined),
        "accuracy": round(float((up == y).mean()), 6),
        "oracle_accuracy": round(float((oracle_up == y).mean()), 6),
        "accuracy_minus_oracle": round(float((up == y).mean() - (oracle_up == y).mean()), 6),
        "expected_accuracy": round(float(expected), 6),
        "oracle_expected_accuracy": round(float(oracle_expected), 6),
        "expected_accuracy_minus_oracle": round(float(expected - oracle_expected), 6),
        "agreement_with_oracle": round(float((up == oracle_up).mean()), 6),
    }


def main() -> int:
    try:
        labels = read_parquet(paths.features("markets") / "windows" / "test.parquet")
        labels = labels.loc[labels["copy"] == 0, ["symbol", "date", "label"]]
        truth = read_parquet(paths.truth("markets"), columns=["symbol", "date", "oracle_p_up"])
        report = {
            "model": oracle_gap(read_parquet(MODEL_DIR / "predictions.parquet"), labels, truth)
        }
        for path in sorted((MODEL_DIR / "comparators").glob("*_predictions.parquet")):
            name = path.name.removesuffix("_predictions.parquet")
            report[name] = oracle_gap(read_parquet(path), labels, truth)
        write_json(paths.train_metrics("mamba") / "oracle_gap.json", report)
    except PipelineError as exc:
        print(f"error: judge: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    for name, r in report.items():
        print(
            f"{name:12s} test accuracy {r['accuracy']:.4f}  minus oracle "
            f"{r['accuracy_minus_oracle']:+.4f}  "
            f"(expected {r['expected_accuracy_minus_oracle']:+.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
