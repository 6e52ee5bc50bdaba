"""Sweeps: many experiments from one config, by grid, zip or seeded random search.

A ``sweep:`` section in the config, either the shorthand ``{lr: [0.1, 0.01], layers: [2, 3]}``
(a grid), or the full form::

    sweep:
      grid: {lr: [0.1, 0.01]}            # crossed
      zip:  {wd: [0, 1e-4], drop: [0, .1]}  # varied together, same length
      random:                            # seeded: the same sweep gives the same points
        samples: 20
        seed: 0
        params:
          lr: {loguniform: [1.0e-4, 1.0e-1]}
          hidden: {choice: [16, 32, 64]}
          dropout: {uniform: [0.0, 0.5]}
      max_parallel: 4                    # how many run at once on Slurm (job array %N)

The parts combine as a product: every grid point with every zip row and every sample.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .config import MAX_NAME_LEN, ExperimentConfig, Scalar, check_name, closest, coerce_value, typed_like
from .errors import BadInput

SWEEP_KEYS = ("grid", "zip", "random", "max_parallel")
RANDOM_KEYS = ("samples", "seed", "params")
DISTRIBUTIONS = ("uniform", "loguniform", "choice", "randint")


@dataclass
class SweepSpec:
    grid: Dict[str, List[Scalar]] = field(default_factory=dict)
    zipped: Dict[str, List[Scalar]] = field(default_factory=dict)
    random: Dict[str, Tuple[str, List[Any]]] = field(default_factory=dict)
    samples: int = 0
    seed: int = 0
    max_parallel: Optional[int] = None

    def is_empty(self) -> bool:
        return not (self.grid or self.zipped or self.random)

    def varied(self) -> List[str]:
        return list(self.grid) + list(self.zipped) + list(self.random)


def parse_spec(config: ExperimentConfig) -> SweepSpec:
    """The config's ``sweep:`` section, validated against its params."""
    raw = config.sweep
    spec = SweepSpec()
    if raw is None:
        return spec
    where = config.where("sweep")
    if not raw:
        raise BadInput(f"{where}: the sweep is empty", "give each swept param a list of values")
    structured = set(raw) <= set(SWEEP_KEYS)
    if not structured:
        raw = {"grid": raw}
    for key in raw:
        if key not in SWEEP_KEYS:
            raise BadInput(f"{config.where('sweep.' + key)}: unknown key 'sweep.{key}'", closest(key, SWEEP_KEYS))
    spec.grid = _lists(config, raw.get("grid") or {}, "grid")
    spec.zipped = _lists(config, raw.get("zip") or {}, "zip")
    lengths = {len(v) for v in spec.zipped.values()}
    if len(lengths) > 1:
        raise BadInput(f"{config.where('sweep.zip')}: zipped params need lists of the same length, got "
                       + ", ".join(f"{k}: {len(v)}" for k, v in spec.zipped.items()))
    if raw.get("random") is not None:
        _parse_random(config, raw["random"], spec)
    if raw.get("max_parallel") is not None:
        value = raw["max_parallel"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInput(f"{config.where('sweep.max_parallel')}: max_parallel must be a whole number >= 1")
        spec.max_parallel = value
    _check_overlap(config, spec)
    return spec


def _lists(config: ExperimentConfig, section: Any, part: str) -> Dict[str, List[Scalar]]:
    if not isinstance(section, dict):
        raise BadInput(f"{config.where('sweep.' + part)}: sweep.{part} must map params to lists of values")
    out = {}
    for name, values in section.items():
        where = config.where(f"sweep.{part}.{name}") if part != "grid" else (
            config.where(f"sweep.grid.{name}") if f"sweep.grid.{name}" in config.lines else config.where(f"sweep.{name}"))
        _check_param(config, str(name), where)
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise BadInput(f"{where}: no values to sweep for '{name}'", "give a list like [0.1, 0.01]")
        if any(isinstance(v, (list, dict)) for v in values):
            raise BadInput(f"{where}: values swept for '{name}' must be single values")
        like = config.params[str(name)]
        out[str(name)] = [typed_like(v, like)[0] for v in values]  # 1 beside lr: 0.1 is 1.0
    return out


def _check_param(config: ExperimentConfig, name: str, where: str) -> None:
    if name not in config.params:
        raise BadInput(f"{where}: '{name}' is swept but is not a param of the config",
                       closest(name, list(config.params) or ["(no params)"]))


def _parse_random(config: ExperimentConfig, section: Any, spec: SweepSpec) -> None:
    where = config.where("sweep.random")
    if not isinstance(section, dict):
        raise BadInput(f"{where}: sweep.random must be a mapping (samples, seed, params)")
    for key in section:
        if key not in RANDOM_KEYS:
            raise BadInput(f"{config.where('sweep.random.' + key)}: unknown key 'sweep.random.{key}'",
                           closest(key, RANDOM_KEYS))
    samples = section.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise BadInput(f"{where}: sweep.random.samples must be a whole number >= 1, got {samples!r}")
    seed = section.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise BadInput(f"{where}: sweep.random.seed must be a whole number")
    params = section.get("params") or {}
    if not isinstance(params, dict) or not params:
        raise BadInput(f"{where}: sweep.random.params must name at least one param and its distribution")
    for name, dist in params.items():
        pwhere = config.where(f"sweep.random.params.{name}")
        _check_param(config, str(name), pwhere)
        if not isinstance(dist, dict) or len(dist) != 1:
            raise BadInput(f"{pwhere}: give '{name}' one distribution, e.g. {{loguniform: [1.0e-4, 1.0e-1]}}")
        kind, args = next(iter(dist.items()))
        if kind not in DISTRIBUTIONS:
            raise BadInput(f"{pwhere}: unknown distribution '{kind}'", closest(str(kind), DISTRIBUTIONS))
        spec.random[str(name)] = (kind, _check_distribution(kind, args, str(name), pwhere))
    spec.samples, spec.seed = samples, seed


def _check_distribution(kind: str, args: Any, name: str, where: str) -> List[Any]:
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise BadInput(f"{where}: choice for '{name}' needs a non-empty list of values")
        return list(args)
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
        raise BadInput(f"{where}: {kind} for '{name}' needs [low, high] numbers")
    low, high = args
    if low > high:
        raise BadInput(f"{where}: range for '{name}' has low > high ({low} > {high})", "swap them")
    if kind == "loguniform" and low <= 0:
        raise BadInput(f"{where}: loguniform range for '{name}' must be above 0, got low={low}")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise BadInput(f"{where}: randint range for '{name}' needs whole numbers")
    return [low, high]


def _check_overlap(config: ExperimentConfig, spec: SweepSpec) -> None:
    seen: Dict[str, str] = {}
    for part, names in (("grid", spec.grid), ("zip", spec.zipped), ("random", spec.random)):
        for name in names:
            if name in seen:
                raise BadInput(f"{config.where('sweep')}: '{name}' is swept twice (in {seen[name]} and {part})")
            seen[name] = part


def check_not_empty(config: ExperimentConfig, spec: SweepSpec) -> None:
    """A ``sweep:`` section (e.g. only max_parallel) that, with --sweep, still varies nothing."""
    if config.sweep is not None and spec.is_empty():
        raise BadInput(f"{config.where('sweep')}: the sweep is empty", "give each swept param a list of values")


def add_cli_sweeps(config: ExperimentConfig, spec: SweepSpec, texts: Sequence[str], zipped: bool) -> SweepSpec:
    """``--sweep lr=0.1,0.01`` (grid, or zip with ``--zip``), values typed like the param."""
    for text in texts:
        if "=" not in text:
            raise BadInput(f"--sweep {text!r}: expected NAME=V1,V2,...", "e.g. --sweep lr=0.1,0.01")
        name, _, raw = text.partition("=")
        name = name.strip()
        if name not in config.params:
            raise BadInput(f"--sweep {name}: '{name}' is not a param of {config.source}",
                           closest(name, list(config.params) or ["(no params)"]))
        parts = [p for p in raw.split(",") if p.strip()]
        if not parts:
            raise BadInput(f"--sweep {name}: no values given", "e.g. --sweep lr=0.1,0.01")
        values = [coerce_value(p.strip(), config.params[name], f"--sweep {name}") for p in parts]
        target = spec.zipped if zipped else spec.grid
        for other in (spec.grid, spec.zipped, spec.random):
            other.pop(name, None)
        target[name] = values
    if zipped and len({len(v) for v in spec.zipped.values()}) > 1:
        raise BadInput("--zip: every --sweep needs the same number of values, got "
                       + ", ".join(f"{k}: {len(v)}" for k, v in spec.zipped.items()))
    return spec


def points(spec: SweepSpec) -> List[Dict[str, Scalar]]:
    """Every point of the sweep, in a stable order."""
    grid_points = [dict(zip(spec.grid, combo)) for combo in itertools.product(*spec.grid.values())] or [{}]
    zip_rows = [dict(zip(spec.zipped, row)) for row in zip(*spec.zipped.values())] or [{}]
    rng = random.Random(spec.seed)
    samples = [{name: _draw(rng, kind, args) for name, (kind, args) in spec.random.items()}
               for _ in range(spec.samples)] if spec.random else [{}]
    return [{**g, **z, **r} for g in grid_points for z in zip_rows for r in samples]


def _draw(rng: random.Random, kind: str, args: List[Any]) -> Scalar:
    if kind == "choice":
        chosen: Scalar = rng.choice(args)
        return chosen
    low, high = args
    if kind == "randint":
        return rng.randint(low, high)
    if kind == "loguniform":
        return float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.6g}")
    return float(f"{rng.uniform(low, high):.6g}")


_NAME_CHAR = re.compile(r"[A-Za-z0-9._+-]")  # what a value may keep in a name (',' and '=' separate)
_HASH_LEN = 8


def point_name(base: str, point: Mapping[str, Scalar]) -> str:
    """``base-lr=0.1,layers=2``: always a valid experiment name, whatever the values are.

    Characters a name cannot hold are replaced (accents dropped first: é -> e); a value that
    lost characters gets a short hash of itself so that different values keep different
    names; a name over MAX_NAME_LEN is cut and ends in a hash of the whole. The params
    themselves are kept exactly; only the name is shortened.
    """
    parts = [f"{key}={_value_text(value)}" for key, value in point.items()]
    name = f"{base}-" + ",".join(parts) if parts else base
    name = _ref_safe(name)
    if len(name) > MAX_NAME_LEN:
        name = _ref_safe(name[:MAX_NAME_LEN - _HASH_LEN - 1]) + "-" + _digest(name)
    problem = check_name(name)
    if problem:  # cannot happen for a valid base name; refuse rather than record a bad one
        raise BadInput(f"sweep point name {name!r} is not usable: {problem}", "give the config a simpler name")
    return name


def _value_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    kept = "".join(c if _NAME_CHAR.match(c) else "_" for c in ascii_text)
    if kept != text:  # characters were lost: keep values that differ apart
        kept = f"{kept}_{_digest(text)}"
    return kept


def _ref_safe(name: str) -> str:
    while ".." in name:
        name = name.replace("..", "_")
    name = name.rstrip(".")
    return name[:-5] + "_lock" if name.endswith(".lock") else name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]


def sweep_id(config: ExperimentConfig, pts: Sequence[Mapping[str, Scalar]]) -> str:
    digest = hashlib.sha1(json.dumps([config.name, list(pts), time.time()], default=str).encode()).hexdigest()
    suffix = f"-sweep-{digest[:6]}"
    # The group is checked like a name when the executor reads the stored config.
    return _ref_safe(config.name[:MAX_NAME_LEN - len(suffix)]) + suffix


def expand(config: ExperimentConfig, spec: SweepSpec, group: Optional[str] = None) -> List[ExperimentConfig]:
    """One config per point, named after its varied params, all in one group: ``group``
    (--group), else the config's own ``group:``, else a new sweep id."""
    pts = points(spec)
    group = group or config.group or sweep_id(config, pts)
    out = []
    for point in pts:
        child = config.with_params(point, name=point_name(config.name, point))
        child.group = group
        child.sweep = None
        out.append(child)
    return out
