"""The validate stage's judgements of the forecasts: the leakage alarm, the paired margin by
date block, the comparison chart and the report's forecast sections (the gates on a whole
pipeline: tests/stages/test_validate_gates.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _labelled(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    g = np.random.default_rng(seed)
    keys = pd.DataFrame({"symbol": "S", "date": pd.bdate_range("2020-01-01", periods=n)})
    oracle = np.clip(0.5 + 0.1 * g.standard_normal(n), 0.01, 0.99)
    labels = keys.assign(label=(g.random(n) < oracle).astype(np.int8))
    return keys, labels, oracle


def test_the_leakage_alarm_fires_on_a_peek_at_the_label_and_not_on_the_oracle() -> None:
    from reprolab.validate.oracle import above_oracle, window_scores

    keys, labels, oracle = _labelled(5000, 3)
    truth = keys.assign(oracle_p_up=oracle)
    # the oracle plus a little of the realised label: what a leaked feature would give
    leak = np.clip(oracle + 0.15 * (labels["label"].to_numpy() - 0.5), 0, 1)
    gen = np.random.default_rng(0)
    dates = keys["date"].to_numpy()
    leaked = window_scores(keys.assign(probability=leak), labels, truth)
    leaked = above_oracle(leaked, dates, 1000, gen)
    honest = window_scores(keys.assign(probability=oracle), labels, truth)
    honest = above_oracle(honest, dates, 1000, gen)
    assert leaked["alarm"] and leaked["ci95_low"] > 0
    assert not honest["alarm"] and honest["difference"] == 0.0


def test_the_paired_margin_has_an_interval_around_the_mean_difference() -> None:
    from reprolab.validate.oracle import paired_interval

    diff = np.random.default_rng(4).normal(0.01, 0.1, 4000)
    m = paired_interval(diff, np.arange(4000), 1000, np.random.default_rng(0))
    assert m["ci95_low"] < m["difference"] < m["ci95_high"]
    assert m["ci95_low"] > 0 and m["ci95_high"] - m["ci95_low"] < 0.02
    assert m["blocks"] == 4000


def _window_bootstrap(diff: np.ndarray, n_resamples: int, gen: np.random.Generator) -> list:
    """The plain window bootstrap: windows drawn one by one with replacement."""
    means = diff[gen.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    return list(np.quantile(means, [0.025, 0.975]))


def test_with_one_window_per_date_the_block_bootstrap_is_the_window_bootstrap() -> None:
    from reprolab.validate.oracle import paired_interval

    diff = np.random.default_rng(5).normal(0.0, 1.0, 500)
    dates = pd.bdate_range("2020-01-01", periods=500).to_numpy()
    m = paired_interval(diff, dates, 400, np.random.default_rng(7))
    lo, hi = _window_bootstrap(diff, 400, np.random.default_rng(7))
    assert (m["ci95_low"], m["ci95_high"]) == pytest.approx((lo, hi), rel=1e-12, abs=1e-15)
    assert m["difference"] == pytest.approx(diff.mean(), rel=1e-12)
    assert m["blocks"] == 500


def _day_panel(days: int, symbols: int, correlated: bool, seed: int) -> tuple:
    """Per window (date-major, ``symbols`` windows a day) a difference and its date: the
    windows of a day share one draw (``correlated``) or draw each their own."""
    g = np.random.default_rng(seed)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=days).to_numpy(), symbols)
    noise = (
        np.repeat(g.normal(0.0, 1.0, days), symbols)
        if correlated
        else g.normal(0.0, 1.0, days * symbols)
    )
    return noise, dates


def test_windows_of_one_date_moving_together_widen_the_interval() -> None:
    """Twenty symbols a day that all move with the market carry one day's information, not
    twenty: the date-block interval is as wide as a bootstrap of 200 day means; independent
    windows give the narrow interval of 4,000. A window bootstrap gives both the narrow one."""
    from reprolab.validate.oracle import paired_interval

    correlated, dates = _day_panel(200, 20, correlated=True, seed=1)
    independent, _ = _day_panel(200, 20, correlated=False, seed=1)
    gen = np.random.default_rng
    wide = paired_interval(correlated, dates, 2000, gen(0))
    narrow = paired_interval(independent, dates, 2000, gen(0))
    width = {k: v["ci95_high"] - v["ci95_low"] for k, v in (("wide", wide), ("narrow", narrow))}
    assert width["wide"] > 3 * width["narrow"]
    # the expected widths: 2 x 1.96 sd / sqrt(blocks of information)
    assert width["wide"] == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.15)
    assert width["narrow"] == pytest.approx(2 * 1.96 / np.sqrt(4000), rel=0.15)
    # the window bootstrap would call the correlated panel as sure as the independent one
    lo, hi = _window_bootstrap(correlated, 2000, gen(0))
    assert hi - lo == pytest.approx(width["narrow"], rel=0.15)
    assert wide["blocks"] == narrow["blocks"] == 200


def test_a_date_block_weighs_its_windows_not_its_date() -> None:
    """Blocks of unequal size: the statistic is the windows' mean over the drawn dates (their
    sums over their counts), so the interval surrounds the window mean, not the mean of the
    day means."""
    from reprolab.validate.oracle import paired_interval

    # 50 busy days of 9 windows at +1, 50 quiet days of 1 window at -1: window mean +0.8,
    # mean of day means 0
    diff = np.concatenate([np.ones(450), -np.ones(50)])
    dates = np.concatenate([np.repeat(np.arange(50), 9), np.arange(50, 100)])
    m = paired_interval(diff, dates, 1000, np.random.default_rng(0))
    assert m["difference"] == pytest.approx(0.8)
    assert 0.6 < m["ci95_low"] < 0.8 < m["ci95_high"] < 0.95
    assert m["blocks"] == 100


def test_the_block_interval_is_deterministic_and_follows_its_seed() -> None:
    from reprolab.validate.oracle import paired_interval

    diff, dates = _day_panel(120, 5, correlated=False, seed=2)
    first = paired_interval(diff, dates, 500, np.random.default_rng(11))
    assert paired_interval(diff, dates, 500, np.random.default_rng(11)) == first
    # the order of the windows does not matter: blocks are found by date
    order = np.random.default_rng(3).permutation(len(diff))
    shuffled = paired_interval(diff[order], dates[order], 500, np.random.default_rng(11))
    assert shuffled == pytest.approx(first, rel=1e-12)
    assert paired_interval(diff, dates, 500, np.random.default_rng(12)) != first


def test_a_paired_interval_needs_a_block_per_window() -> None:
    from reprolab.validate.oracle import paired_interval

    with pytest.raises(ValueError, match="3 differences for 2 blocks"):
        paired_interval(np.zeros(3), np.zeros(2), 10, np.random.default_rng(0))


def test_the_comparison_chart_lists_every_model_best_first(tmp_path: Path) -> None:
    import json

    from reprolab.validate.chart import comparison_rows, write_comparison

    gap = {"expected_accuracy_minus_oracle": -0.004, "accuracy_minus_oracle": -0.01}
    gaps = {
        "model": {**gap, "accuracy": 0.55},
        "majority": {**gap, "expected_accuracy_minus_oracle": -0.05, "accuracy": 0.5},
        "boosted_trees": {**gap, "expected_accuracy_minus_oracle": -0.006, "accuracy": 0.54},
    }
    rows = comparison_rows(gaps)
    assert [r["model"] for r in rows] == ["mamba", "boosted_trees", "majority"]
    assert rows[0]["expected_gap_pt"] == -0.4
    write_comparison(rows, tmp_path / "c.json", tmp_path / "c.png")
    assert json.loads((tmp_path / "c.json").read_text()) == rows
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_comparison_rows_carry_each_models_margin_over_the_mamba() -> None:
    from reprolab.validate.chart import comparison_rows

    gap = {"expected_accuracy_minus_oracle": -0.004, "accuracy_minus_oracle": -0.01}
    gaps = {"model": {**gap, "accuracy": 0.55}, "hmm": {**gap, "accuracy": 0.56}}
    gaps["hmm"]["expected_accuracy_minus_oracle"] = -0.001
    margins = {"hmm": {"difference": 0.003, "ci95_low": 0.001, "ci95_high": 0.005}}
    rows = comparison_rows(gaps, margins)
    assert [r["model"] for r in rows] == ["hmm", "mamba"]
    assert rows[0] == {
        "model": "hmm",
        "expected_gap_pt": -0.1,
        "realised_gap_pt": -1.0,
        "accuracy": 0.56,
        "margin_over_mamba_pt": 0.3,
        "margin_ci95_low_pt": 0.1,
        "margin_ci95_high_pt": 0.5,
    }
    assert rows[1]["margin_over_mamba_pt"] == 0.0


def _gap(expected: float) -> dict[str, float]:
    return {
        "accuracy": 0.55,
        "expected_accuracy": 0.556 + expected,
        "expected_accuracy_minus_oracle": expected,
        "accuracy_minus_oracle": expected,
    }


def _margin(best: str, difference: float, low: float, high: float, **extra: object) -> dict:
    return {"best": best, "difference": difference, "ci95_low": low, "ci95_high": high, **extra}


BLOCK = "date: all symbols of a trading day resampled together"


def _mamba_section(mamba_behind: bool) -> dict:
    """A judged ``mamba`` section: the Mamba, gru and hmm; hmm ahead when ``mamba_behind``."""
    hmm = 0.004 if mamba_behind else -0.002
    return {
        "bootstrap": {"block": BLOCK, "resamples": 2000, "level": 0.95},
        "oracle_gap": {"gru": _gap(-0.006), "model": _gap(-0.001), "hmm": _gap(-0.001 + hmm)},
        "margins_over_mamba": {
            "gru": {"difference": -0.005, "ci95_low": -0.007, "ci95_high": -0.003},
            "hmm": {"difference": hmm, "ci95_low": hmm - 0.001, "ci95_high": hmm + 0.001},
        },
        "margin_over_best_comparator": _margin(
            "hmm", -hmm, -hmm - 0.001, -hmm + 0.001, block=BLOCK
        ),
    }


def _walk_forward(mamba_behind: bool) -> dict:
    lead = -0.003 if mamba_behind else 0.002
    return {
        "folds": {
            "fold_0": {"mamba": _gap(-0.002), "hmm": _gap(-0.002 - lead)},
            "fold_1": {"mamba": _gap(-0.003), "hmm": _gap(-0.003 - lead)},
        },
        "pooled": {"mamba": _gap(-0.0025), "hmm": _gap(-0.0025 - lead)},
        "margin_over_best_comparator": _margin(
            "hmm", lead, lead - 0.001, lead + 0.001, windows=1234, block=BLOCK
        ),
    }


def _render(mamba_behind: bool, timings: dict | None) -> str:
    from reprolab.validate.report import forecast_comparison, walk_forward_section

    timings = timings or {}
    lines = forecast_comparison(_mamba_section(mamba_behind), timings.get("test", {}))
    lines += walk_forward_section(_walk_forward(mamba_behind), timings.get("walk_forward", {}))
    return "\n".join(lines)


def test_the_forecast_table_lists_every_model_mamba_first_with_margins_and_timings() -> None:
    timings = {
        "test": {
            "model": {"train_seconds": 153.5, "inference_ms_per_1000": 68.9},
            "gru": {"train_seconds": 63.2},  # no inference time: n/a
        },
        "walk_forward": {"mamba": 241.5},
    }
    text = _render(mamba_behind=False, timings=timings)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| model | accuracy | expected accuracy | expected gap to the oracle (pt) | "
        "margin over the Mamba (pt) [95 % interval] | training s | "
        "inference ms / 1,000 windows |"
    )
    assert table[1] == "| **mamba** | 0.55 | 0.555 | -0.100 | — | 153.5 | 68.9 |"
    assert table[2] == "| hmm | 0.55 | 0.553 | -0.300 | -0.200 [-0.300, -0.100] | n/a | n/a |"
    assert table[3] == "| gru | 0.55 | 0.55 | -0.600 | -0.500 [-0.700, -0.300] | 63.2 | n/a |"
    assert (
        "The best comparator is hmm (highest expected accuracy on these windows); the Mamba's "
        "margin over it is +0.200 pt, paired 95 % interval [+0.100, +0.300] pt "
        f"(block = {BLOCK})." in text
    )
    assert f"block = {BLOCK}" in text
    assert "not the Mamba" not in text
    # walk-forward: every model per fold and pooled, the Mamba first, then its margin
    assert table[4:] == [
        "| fold | mamba | hmm |",
        "| fold_0 | -0.200 | -0.400 |",
        "| fold_1 | -0.300 | -0.500 |",
        "| pooled | -0.250 | -0.450 |",
    ]
    assert (
        "Training seconds over all folds (metrics/walk_forward/speed.json): mamba 241.5, hmm n/a."
        in text
    )
    assert (
        "Pooled over the folds, the Mamba's margin over the best walk-forward comparator (hmm, "
        "by pooled expected accuracy) is +0.200 pt, paired 95 % interval [+0.100, +0.300] pt "
        f"on the same 1,234 (symbol, date) rows (block = {BLOCK})." in text
    )


def test_the_report_says_so_when_a_comparator_beats_the_mamba_beyond_noise() -> None:
    text = _render(mamba_behind=True, timings=None)
    assert "The best model on the test split is hmm, not the Mamba." in text
    assert "The best model over the walk-forward folds is hmm, not the Mamba." in text
    assert "| **mamba** | 0.55 | 0.555 | -0.100 | — | n/a | n/a |" in text


def test_timings_come_from_the_speed_files_and_their_absence_is_not_an_error(
    tmp_path: Path,
) -> None:
    import json

    from reprolab.validate.stage import model_timings

    speed, folds = tmp_path / "speed.json", tmp_path / "wf_speed.json"
    assert model_timings(speed, folds) == {"test": {}, "walk_forward": {}}
    speed.write_text(
        json.dumps(
            {
                "train_seconds": 1.0,
                "models": {
                    "mamba": {"train_seconds": 153.5, "inference_ms_per_1000": 68.9},
                    "hmm": {"train_seconds": 2.5, "inference_ms_per_1000": None},
                },
            }
        )
    )
    folds.write_text(json.dumps({"seconds": {"fold_0_mamba": 70, "fold_1_mamba": 80.5}}))
    assert model_timings(speed, folds) == {
        "test": {
            "model": {"train_seconds": 153.5, "inference_ms_per_1000": 68.9},
            "hmm": {"train_seconds": 2.5},
        },
        "walk_forward": {"mamba": 150.5},
    }
