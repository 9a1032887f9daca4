"""The validate stage on real tiny data: every gate passes on an honest pipeline, and every
gate fails, naming itself, when what it guards is broken."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from reprolab.core import paths
from reprolab.core.config import Params, PinnGoals, load_params, parse_params, to_dict
from reprolab.core.errors import DataQualityError, GateError
from reprolab.core.io import read_json, write_json
from reprolab.core.manifest import producer_of, seal
from reprolab.core.resources import StageResources
from reprolab.core.stage import DATASETS, JUDGED_STAGES, dispatch
from reprolab.core.tables import read_parquet, write_parquet
from reprolab.datasets.options.generate import domain_bounds
from reprolab.validate.report import PLOTS
from reprolab.validate.stage import REPORT, judge, validate
from tests import tiny
from tests.tiny import repo_params


def _original_test_windows() -> pd.DataFrame:
    windows = read_parquet(paths.features("markets") / "windows" / "test.parquet")
    return windows.loc[windows["copy"] == 0, ["symbol", "date", "label"]]


def _oracle(keys: pd.DataFrame) -> np.ndarray:
    truth = read_parquet(paths.truth("markets"), columns=["symbol", "date", "oracle_p_up"])
    return keys.merge(truth, on=["symbol", "date"], how="left")["oracle_p_up"].to_numpy()


def write_model_outputs(
    probability: np.ndarray | None = None,
    comparators: dict[str, np.ndarray] | None = None,
    walk_forward: np.ndarray | None = None,
) -> None:
    """What the training stages leave for validate: Mamba predictions on the test windows
    (default: the oracle's own), the comparators (default: majority, always up at 0.6),
    walk-forward folds of the Mamba (default: its test predictions) and of each comparator,
    and a resource file per stage."""
    keys = _original_test_windows()[["symbol", "date"]].reset_index(drop=True)
    oracle = _oracle(keys)
    p = oracle if probability is None else probability
    others = {"majority": np.full(len(keys), 0.6)} if comparators is None else comparators
    mamba = paths.model_dir("mamba")
    write_parquet(mamba / "predictions.parquet", keys.assign(probability=p))
    for old in (mamba / "comparators").glob("*_predictions.parquet"):
        old.unlink()
    for name, q in others.items():
        write_parquet(
            mamba / "comparators" / f"{name}_predictions.parquet", keys.assign(probability=q)
        )
    fold = np.arange(len(keys)) * 3 // len(keys)
    wf = {"mamba": p if walk_forward is None else walk_forward, **others}
    folds = pd.concat(
        [keys.assign(fold=fold, model=name, probability=q) for name, q in wf.items()],
        ignore_index=True,
    )
    write_parquet(paths.model_dir("mamba_walk_forward") / "predictions.parquet", folds)
    for stage in JUDGED_STAGES:
        path = paths.RESOURCES / f"{stage}.json"
        if not path.exists():
            write_json(path, {"stage": stage, "wall_s": 1.0, "peak_rss_mib": 300.0})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data stages of every dataset, run for real on the tiny profile."""
    root = tmp_path_factory.mktemp("validate")
    tiny.write_params(root)
    with contextlib.chdir(root):
        params = load_params()
        for step in ("generate", "split_augment", "features", "data_metrics"):
            for dataset in DATASETS:
                with StageResources(f"{step}@{dataset}", show_progress=False) as res:
                    dispatch(step, dataset, params, res)
        with StageResources("train@cet", show_progress=False) as res:
            dispatch("train", "cet", params, res)  # validate scores the saved model
        write_model_outputs()
        export_pinn(params)
        # Models this small cannot meet the default goals: the PINN's gates are set at its
        # own figures (x2) and the CET's at its own, so that a worse model fails them.
        report = judge(params)
        pinn = report["pinn"]["figures"]
        pinn_gates = {name: f"<= {2 * pinn[name]:.6g}" for name in PINN_GOALS}
        cet = report["cet"]["figures"]
        cet_gates = {
            "pass_rate": f">= {cet['pass_rate']}",
            "compression": f"<= {cet['compression']}",
            "margin_over_heuristic": f">= {cet['margin_over_heuristic']}",
        }
        tiny.write_params(root, validate={"pinn": pinn_gates, "cet": cet_gates})
    return root


PINN_GOALS = [f.name for f in dataclasses.fields(PinnGoals)]


def export_pinn(params: Params) -> None:
    """An exported PINN (untrained: what validate scores is the file, not the training)."""
    from reprolab.models.pinn.model import build_pinn, export_weights
    from reprolab.models.pinn.train import trained_domain

    model = build_pinn(params.train.pinn, domain_bounds(params.options.generate.domain), seed=0)
    export_weights(model, paths.model_dir("pinn") / "weights.npz")
    write_json(paths.model_dir("pinn") / "domain.json", trained_domain(params.options))


def _params(**over: Any) -> Params:
    """The world's params (tiny, with the PINN gates at the exported PINN's figures)."""
    return parse_params(tiny.merge(yaml.safe_load(Path("params.yaml").read_text()), over))


@pytest.fixture
def world(built: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the built pipeline to break."""
    root = tmp_path / "w"
    shutil.copytree(built, root)
    with contextlib.chdir(root):
        yield root


def _rewrite(path: Path, frame: pd.DataFrame) -> None:
    """Overwrite a data file as a faulty producer would: new bytes and a manifest that vouches
    for them (without it the readers stop at the manifest check, before any gate)."""
    write_parquet(path, frame)
    seal(path.parent, producer_of(path))


def _failed(**params: object) -> list[str]:
    return judge(_params(**params))["failed"]


def test_every_gate_passes_on_the_honest_pipeline(world: Path) -> None:
    report = judge(_params())
    sections = ("data", "resources", "mamba", "pinn", "cet")
    gates = {f"{s}.{g}": r for s in sections for g, r in report[s]["goals"].items()}
    assert set(report["data"]["goals"]) == {
        "schema_mismatches",
        "missing_share",
        "split_overlaps",
        "augmented_outside_train",
        "embargo_shortfall_days",
        "lookahead_changed_rows",
    }
    assert all(set(g) == {"value", "threshold", "passed", "meaning"} for g in gates.values())
    assert all(g["meaning"] for g in gates.values())
    assert report["failed"] == []
    assert report["data"]["figures"]["augmented_outside_train"] == 0
    assert report["mamba"]["goals"]["models_above_oracle"]["passed"]
    assert list(report["mamba"]["goals"]) == [
        "expected_accuracy_minus_oracle",
        "margin_over_best_comparator_ci95_high",
        "walk_forward_margin_ci95_high",
        "models_above_oracle",
    ]


def test_a_forecast_far_below_the_oracle_fails_its_gates_and_folds_are_judged(
    world: Path,
) -> None:
    keys = _original_test_windows()[["symbol", "date"]].reset_index(drop=True)
    write_model_outputs(1.0 - _oracle(keys))  # the oracle's opposite
    report = judge(_params())
    gaps = report["mamba"]["oracle_gap"]
    assert set(gaps) == {"model", "majority"}
    assert gaps["model"]["expected_accuracy_minus_oracle"] < -0.05
    assert report["failed"] == [
        "mamba.expected_accuracy_minus_oracle",
        "mamba.margin_over_best_comparator_ci95_high",
        "mamba.walk_forward_margin_ci95_high",
    ]
    wf = report["walk_forward"]
    assert sorted(wf["folds"]) == ["fold_0", "fold_1", "fold_2"]
    assert sum(f["mamba"]["windows"] for f in wf["folds"].values()) == len(keys)
    assert wf["pooled"]["mamba"]["accuracy"] == gaps["model"]["accuracy"]
    assert wf["margin_over_best_comparator"]["best"] == "majority"
    assert wf["margin_over_best_comparator"]["windows"] == len(keys)


def test_the_margin_gates_judge_the_upper_end_of_the_date_block_interval(world: Path) -> None:
    """A comparator exactly as good as the Mamba passes (not worse beyond noise); the gated
    figure is the interval's upper end, its block the trading day, and the margin and its
    interval are reported beside it."""
    keys = _original_test_windows()[["symbol", "date"]].reset_index(drop=True)
    oracle = _oracle(keys)
    write_model_outputs(comparators={"majority": np.full(len(keys), 0.6), "hmm": oracle})
    report = judge(_params())
    mamba = report["mamba"]
    margin = mamba["margin_over_best_comparator"]
    assert margin["best"] == "hmm"
    assert margin["difference"] == margin["ci95_low"] == margin["ci95_high"] == 0.0
    assert margin["block"] == "date: all symbols of a trading day resampled together"
    assert margin["blocks"] == keys["date"].nunique() < len(keys)
    assert mamba["bootstrap"]["block"] == margin["block"]
    figures = mamba["figures"]
    assert figures["margin_over_best_comparator"] == 0.0
    assert figures["margin_over_best_comparator_ci95_high"] == 0.0
    assert mamba["goals"]["margin_over_best_comparator_ci95_high"]["passed"]
    # every comparator's margin over the Mamba, the best's the mirror of the Mamba's over it
    majority = mamba["margins_over_mamba"]["majority"]
    assert majority["ci95_high"] < 0 and mamba["margins_over_mamba"]["hmm"]["difference"] == 0
    wf = report["walk_forward"]["margin_over_best_comparator"]
    assert wf["best"] == "hmm" and wf["ci95_high"] == 0.0
    assert figures["walk_forward_margin_ci95_high"] == 0.0
    assert report["failed"] == []


def test_a_comparator_better_beyond_noise_fails_the_margin_gate_by_name(world: Path) -> None:
    """A new comparator file is judged without being named anywhere in validate; one that
    beats the Mamba on the test windows fails the test-split gate and the report says who
    is best; the walk-forward gate judges the folds on their own."""
    keys = _original_test_windows()[["symbol", "date"]].reset_index(drop=True)
    oracle = _oracle(keys)
    flipped = np.where(np.arange(len(keys)) % 2 == 0, oracle, 1.0 - oracle)  # half wrong
    write_model_outputs(
        flipped,
        comparators={"majority": np.full(len(keys), 0.6), "hmm": oracle},
        walk_forward=oracle,  # the Mamba's folds are the oracle's own: that gate passes
    )
    params = _params()
    validate(params, StageResources("validate", show_progress=False))
    report = read_json(paths.VALIDATE)
    margin = report["mamba"]["margin_over_best_comparator"]
    assert margin["best"] == "hmm" and margin["ci95_high"] < 0
    assert "mamba.margin_over_best_comparator_ci95_high" in report["failed"]
    assert "mamba.walk_forward_margin_ci95_high" not in report["failed"]
    review = REPORT.read_text()
    assert "The best model on the test split is hmm, not the Mamba." in review
    assert "not the Mamba" not in review.replace(
        "The best model on the test split is hmm, not the Mamba.", ""
    )
    rows = read_json(paths.PLOTS / "mamba_comparison.json")
    assert {r["model"] for r in rows} == {"mamba", "majority", "hmm"}
    hmm = next(r for r in rows if r["model"] == "hmm")
    assert hmm["margin_ci95_low_pt"] > 0  # hmm over the Mamba, beyond noise


def test_timings_reach_the_report_and_never_validate_json(world: Path) -> None:
    """validate.json is byte-identical whatever the speed files say (or if they are gone);
    the report shows each model's timings, n/a where one is missing."""
    write_model_outputs(comparators={"majority": np.full(len(_original_test_windows()), 0.6)})
    params = _params()
    speed = paths.train_metrics("mamba") / "speed.json"
    folds = paths.METRICS / "walk_forward" / "speed.json"
    seen = []
    for scale in (1.0, 3.0):
        write_json(
            speed,
            {"models": {"mamba": {"train_seconds": 100.0 * scale, "inference_ms_per_1000": 7.0}}},
        )
        write_json(folds, {"seconds": {"fold_0_mamba": 5.0 * scale, "fold_1_mamba": 6.0}})
        validate(params, StageResources("validate", show_progress=False))
        seen.append(paths.VALIDATE.read_bytes())
        review = REPORT.read_text()
        mamba_row = next(line for line in review.splitlines() if line.startswith("| **mamba**"))
        assert mamba_row.endswith(f"| — | {100 * scale:g} | 7 |")
        majority = next(line for line in review.splitlines() if line.startswith("| majority"))
        assert majority.endswith("| n/a | n/a |")
        assert f"mamba {5 * scale + 6:g}, majority n/a." in review
    speed.unlink()
    folds.unlink()
    validate(params, StageResources("validate", show_progress=False))
    seen.append(paths.VALIDATE.read_bytes())
    assert seen[0] == seen[1] == seen[2]
    assert b"train_seconds" not in seen[0] and b"inference_ms" not in seen[0]
    mamba_row = next(line for line in REPORT.read_text().splitlines() if "**mamba**" in line)
    assert mamba_row.endswith("| — | n/a | n/a |")


def test_thresholds_come_from_params(world: Path) -> None:
    report = judge(_params(validate={"data": {"split_overlaps": "<= -1"}}))
    assert report["data"]["goals"]["split_overlaps"] == {
        "value": 0,
        "threshold": "<= -1",
        "passed": False,
        "meaning": "keys in more than one split: market (symbol, date) rows and label dates, "
        "option contracts, context programs and templates",
    }
    assert report["failed"] == ["data.split_overlaps"]


def test_a_market_row_in_two_splits_fails_the_overlap_gate(world: Path) -> None:
    part = sorted((paths.split("markets") / "train").glob("part-*.parquet"))[0]
    train = read_parquet(part)
    val = read_parquet(paths.split("markets") / "val")
    leaked = val.loc[~val["context"]].head(5)
    _rewrite(part, pd.concat([train, leaked], ignore_index=True))
    report = judge(_params())
    assert report["data"]["details"]["split_overlaps"]["markets (symbol, date)"] == 5
    assert "data.split_overlaps" in report["failed"]


def test_a_context_template_in_two_splits_fails_the_overlap_gate(world: Path) -> None:
    split = paths.split("contexts")
    train = read_parquet(split / "train.parquet")
    test = read_parquet(split / "test.parquet")
    test.loc[0, "template_hash"] = train.loc[0, "template_hash"]
    _rewrite(split / "test.parquet", test)
    assert "data.split_overlaps" in _failed()


def test_an_option_contract_in_two_splits_fails_the_overlap_gate(world: Path) -> None:
    part = sorted((paths.split("options") / "test").glob("part-*.parquet"))[0]
    test = read_parquet(part)
    train = read_parquet(paths.split("options") / "train")
    test.loc[0, "contract_id"] = train.loc[0, "contract_id"]
    _rewrite(part, test)
    assert "data.split_overlaps" in _failed()


def test_augmented_rows_outside_train_fail_their_gate(world: Path) -> None:
    part = sorted((paths.split("markets") / "test").glob("part-*.parquet"))[0]
    test = read_parquet(part)
    test.loc[test.index[-3:], "augmented"] = True
    _rewrite(part, test)
    report = judge(_params())
    assert report["data"]["figures"]["augmented_outside_train"] == 3
    assert "data.augmented_outside_train" in report["failed"]


def test_a_gap_shorter_than_the_embargo_fails_its_gate(world: Path) -> None:
    embargo = _params().markets.split.embargo
    report = judge(_params(markets={"split": {"embargo": embargo + 4}}))
    assert report["data"]["figures"]["embargo_shortfall_days"] == 4
    assert "data.embargo_shortfall_days" in report["failed"]


def test_a_split_with_another_dtype_fails_the_schema_gate(world: Path) -> None:
    table = paths.split("contexts") / "val.parquet"
    _rewrite(table, read_parquet(table).astype({"n_steps": "float64"}))
    report = judge(_params())
    assert report["data"]["details"]["schema_mismatched_files"] == [str(table)]
    assert "data.schema_mismatches" in report["failed"]


def test_a_part_with_another_dtype_stops_validate_before_the_gates(world: Path) -> None:
    part = sorted((paths.split("markets") / "val").glob("part-*.parquet"))[-1]
    write_parquet(part, read_parquet(part).astype({"volume": "float64"}))
    line = f"{part}: column 'volume' is double, expected int64"
    with pytest.raises(DataQualityError, match=re.escape(line)):
        judge(_params())


def test_missing_values_fail_the_missing_share_gate(world: Path) -> None:
    split = paths.split("contexts")
    val = read_parquet(split / "val.parquet")
    val.loc[0, "n_raw_chars"] = np.nan
    _rewrite(split / "val.parquet", val)
    report = judge(_params())
    assert report["data"]["details"]["missing_share_column"] == "contexts/val.n_raw_chars"
    assert "data.missing_share" in report["failed"]


def test_a_feature_computed_from_a_later_row_fails_the_lookahead_gate(world: Path) -> None:
    rows = paths.features("markets") / "rows" / "train"
    for part in sorted(rows.glob("part-*.parquet")):
        table = read_parquet(part)
        series = table.groupby(["symbol", "copy"], sort=False)["log_return"]
        table["log_return"] = series.shift(-1)  # each row sees tomorrow's return
        _rewrite(part, table)
    report = judge(_params())
    assert report["data"]["figures"]["lookahead_changed_rows"] > 0
    assert "data.lookahead_changed_rows" in report["failed"]


def test_the_oracle_plus_a_peek_at_the_label_trips_the_leakage_alarm(world: Path) -> None:
    labels = _original_test_windows()["label"].to_numpy()
    oracle = _oracle(_original_test_windows()[["symbol", "date"]].reset_index(drop=True))
    write_model_outputs(np.clip(oracle + 0.4 * (labels - 0.5), 0.0, 1.0))
    report = judge(_params())
    assert report["mamba"]["above_oracle"]["model"]["alarm"]
    assert "mamba.models_above_oracle" in report["failed"]


def test_a_stage_over_the_memory_budget_fails_the_resources_gate(world: Path) -> None:
    write_json(paths.RESOURCES / "train_pinn.json", {"peak_rss_mib": 9000.0})
    (paths.RESOURCES / "walk_forward.json").unlink()
    report = judge(_params(resources={"memory_budget_mb": 8192}))
    assert report["resources"]["figures"]["stages_over_memory_budget"] == 2
    assert "resources.stages_over_memory_budget" in report["failed"]


def test_a_pinn_with_perturbed_weights_fails_its_gates(world: Path) -> None:
    path = paths.model_dir("pinn") / "weights.npz"
    with np.load(path) as stored:
        weights = {k: stored[k] for k in stored.files}
    g = np.random.default_rng(0)
    for name, w in weights.items():
        if w.dtype.kind == "f" and w.ndim == 2:  # the layers' kernels
            weights[name] = w + 0.2 * g.standard_normal(w.shape).astype(w.dtype)
    np.savez(path, **weights)
    failed = _failed()
    expected = {
        "pinn.price_rel_l2",
        "pinn.price_max_abs_k",
        "pinn.fresh_price_rel_l2",
        "pinn.put_price_rel_l2",
        "pinn.fresh_put_price_rel_l2",
    }
    assert expected <= set(failed), failed
    assert all(f.startswith("pinn.") for f in failed)


def test_puts_are_judged_like_calls(world: Path) -> None:
    """Puts carry the calls' absolute errors on smaller prices: their relative L2 is gated
    on its own, and a put gate fails where the call gates still pass."""
    from reprolab.models.pinn.numpy_model import NumpyPinn
    from reprolab.validate.pinn import price_errors

    figures = judge(_params())["pinn"]["figures"]
    test = read_parquet(paths.features("options") / "test")
    served = NumpyPinn.load(paths.model_dir("pinn") / "weights.npz")
    put = price_errors(served, test[test["region"] != "heldout"], "put")["price_rel_l2"]
    assert figures["put_price_rel_l2"] == put > figures["price_rel_l2"]
    for name in ("put_price_rel_l2", "fresh_put_price_rel_l2"):
        tight = {name: f"<= {0.5 * figures[name]:.6g}"}
        assert _failed(validate={"pinn": tight}) == [f"pinn.{name}"]


def test_a_wrong_yardstick_fails_the_quantlib_cross_check(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reprolab.validate.pinn as pinn

    exact = pinn.bs_price_greeks

    def off(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:  # a closed form 1e-6 off
        return {k: v + 1e-6 for k, v in exact(*args, **kwargs).items()}

    monkeypatch.setattr(pinn, "bs_price_greeks", off)
    assert "pinn.quantlib_max_abs_k" in _failed()


def test_served_puts_off_parity_fail_the_parity_gate(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprolab.models.pinn.numpy_model import NumpyPinn

    greeks = NumpyPinn.greeks

    def skewed(self: Any, S: Any, K: Any, tau: Any, sigma: Any, r: Any, kind: str) -> Any:
        out = greeks(self, S, K, tau, sigma, r, kind)
        return {**out, "price": out["price"] + 1e-6} if kind == "put" else out

    monkeypatch.setattr(NumpyPinn, "greeks", skewed)
    assert "pinn.put_call_parity_max_abs_k" in _failed()


def test_the_cet_is_scored_from_its_saved_model_as_training_scored_it(world: Path) -> None:
    report = judge(_params())
    trained = read_json(paths.train_metrics("cet") / "metrics.json")["test"]
    for name, scores in trained.items():
        assert report["cet"]["test"][name] == pytest.approx(scores, abs=0), name
    assert report["cet"]["figures"]["gold_pass_rate"] == 1.0


def test_a_cet_that_learnt_nothing_fails_its_default_gates(world: Path) -> None:
    # The tiny CET labels no line (its contexts are empty): the repository's bounds catch
    # it, while the reconstructor's own check on the gold contexts still passes.
    defaults = to_dict(repo_params().validate.cet)
    failed = _failed(validate={"cet": defaults})
    assert {"cet.pass_rate", "cet.margin_over_heuristic"} <= set(failed), failed
    assert "cet.gold_pass_rate" not in failed


def test_validate_scores_the_saved_adapter_not_the_training_metrics(world: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = paths.model_dir("cet") / "adapter" / "adapter_model.safetensors"
    g = np.random.default_rng(0)
    # Each LoRA matrix's entries permuted (and scaled up: the tiny adapter barely moved).
    weights = {
        k: 10 * g.permutation(w.ravel()).reshape(w.shape) for k, w in load_file(path).items()
    }
    save_file(dict(sorted(weights.items())), path)
    trained = read_json(paths.train_metrics("cet") / "metrics.json")["test"]["cet"]
    scored = judge(_params())["cet"]["test"]["cet"]
    assert scored["line_accuracy"] < trained["line_accuracy"]


# Two gates no honest pipeline can meet: no part can have fewer than zero mismatches.
MISSES = {"strict": True, "data": {"schema_mismatches": "<= -1", "missing_share": "<= -1"}}


def test_strict_validate_fails_with_one_line_per_failed_gate(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = StageResources("validate", show_progress=False)
    with pytest.raises(
        GateError, match=r"^2 gate\(s\) failed: data.schema_mismatches, data.missing_share "
    ):
        validate(_params(validate=MISSES), res)
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("validate: FAILED")] == [
        "validate: FAILED data.schema_mismatches = 0, threshold <= -1: "
        "parts whose columns or dtypes differ from their dataset's first part",
        "validate: FAILED data.missing_share = 0, threshold <= -1: "
        "largest NaN share of any split column (raw values)",
    ]
    assert sum(line.startswith("validate: passed") for line in lines) > 10
    # the report is written before the stage fails, so the user can read it
    assert read_json(paths.VALIDATE)["failed"] == ["data.schema_mismatches", "data.missing_share"]
    review = REPORT.read_text()
    assert "**2 gate(s) failed:** `data.schema_mismatches`, `data.missing_share`" in review
    assert review.count("**FAIL**") == 2
    for section in ("data", "resources", "mamba", "pinn", "cet"):
        assert f"## {section}\n" in review
    for name in PLOTS.values():
        assert f"(plots/{name})" in review
        assert (paths.PLOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_only_validate_writes_the_failures_and_returns(world: Path) -> None:
    res = StageResources("validate", show_progress=False)
    validate(_params(validate={**MISSES, "strict": False}), res)
    assert read_json(paths.VALIDATE)["failed"] == ["data.schema_mismatches", "data.missing_share"]
