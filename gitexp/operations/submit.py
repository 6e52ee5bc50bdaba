"""Hand made experiments (or a new attempt) to a run target's runner: recorded and started, or nothing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from ..notes import Experiment
from ..runners.base import Made, Runner


@dataclass(frozen=True)
class Submitted:
    """What a runner took: the experiments as recorded, its warnings and its closing line."""

    exps: List[Experiment]
    warnings: List[str]
    line: str


def submit_made(runner: Runner, made: Made) -> Submitted:
    with runner.repo.batch():
        exps = runner.submit(made)
    return Submitted(exps, list(runner.warnings), runner.submitted(exps))
