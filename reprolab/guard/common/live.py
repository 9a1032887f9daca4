"""The one dvclive logger of every trainer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class LiveLog:
    """The one dvclive logger of every trainer: one ``step`` call is one plotted step.

    Metrics land in ``directory`` (``dvc plots show`` reads them); no dvc.yaml or experiment
    is written from inside a stage, since DVC itself tracks the stage.
    """

    def __init__(self, directory: Path) -> None:
        from dvclive import Live

        self.live = Live(dir=str(directory), dvcyaml=False, save_dvc_exp=False)
        self.steps = 0

    def step(self, metrics: Mapping[str, float]) -> None:
        for name, value in sorted(metrics.items()):
            self.live.log_metric(name, float(value))
        self.live.next_step()
        self.steps += 1

    def end(self) -> None:
        self.live.end()

    def __enter__(self) -> LiveLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()
