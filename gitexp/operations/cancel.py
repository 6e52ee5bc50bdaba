"""``git exp cancel``: drop queued experiments, stop running ones, wherever they run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from ..notes import Experiment, Store
from ..repo import Repo
from ..runners import runner_for


@dataclass(frozen=True)
class Cancelled:
    exp: Experiment
    line: str  # what its runner did, for the user


def cancel(repo: Repo, store: Store, idents: Sequence[str]) -> Iterator[Cancelled]:
    """Every experiment is found before any is cancelled (an unknown id cancels nothing);
    then one :class:`Cancelled` per experiment, as its runner finishes with it."""
    exps = [store.find(ident) for ident in idents]
    return _cancelling(repo, store, exps)


def _cancelling(repo: Repo, store: Store, exps: Sequence[Experiment]) -> Iterator[Cancelled]:
    for exp in exps:
        yield Cancelled(exp, runner_for(repo, store, exp).cancel(exp))
