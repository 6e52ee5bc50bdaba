"""The far side of an ssh run target: what ``git exp _agent <op>`` does in the repository there.

The client (:mod:`gitexp.runners.ssh`) runs ``<python> -m gitexp _agent <op>`` in the target's
repository over ssh, sends one JSON request on stdin and reads one JSON answer from stdout;
failures are ``error: ...`` on stderr with gitexp's exit codes, as for any command. Each op is
one ssh round trip:

* ``probe``: versions (gitexp, the agent protocol, the notes schemas it reads, git, Python),
  whether this is a git repository, its run root and the free disk there.
* ``submit``: the experiment commits arrived by ``git push`` as the parents of one commit
  under ``refs/exps-inbox/<id>``; record them here (their names, free ones if taken) and start
  them with this side's runner (local: queued, and a detached worker; slurm: sbatch). The
  inbox ref is taken first (deleted with a compare-and-swap): a client that finds it still
  there knows no gitexp here took it (see :mod:`gitexp.runners.outbox`). Nothing is recorded
  past the request's ``deadline`` (seconds from the start): the client gave up waiting by then.
  A ``files:`` entry missing here fails that experiment with the reason instead of starting it.
* ``drop``: remove experiments again (the client could not record them on its side).
* ``queue``: queued/running/recent experiments, their live states, and this host's free
  resources (GPUs, GPU memory, RAM, disk).
* ``cancel``: stop experiments here.

Nothing in a request becomes a shell word: the request is data, read by Python.
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Sequence

from .. import __version__
from ..errors import BadInput, GitExpError
from ..lifecycle import Status, record
from ..hostprobe import disk, gpu_table, ram
from ..notes import INBOX_PREFIX, Experiment, Store, free_name
from ..paths import run_paths, runs_root
from ..repo import RefUpdate, Repo
from ..summary import summary_problem
from ..values import short
from .reply import PROTOCOL

NOTES_SCHEMAS = (1,)  # summary note schemas this gitexp reads and writes


def check_protocol(request: Dict[str, Any]) -> None:
    """The client speaks our protocol and writes notes we read (else: exit 2, one line)."""
    theirs, schema = request.get("protocol"), request.get("schema", 1)
    if theirs != PROTOCOL or schema not in NOTES_SCHEMAS:
        raise BadInput(f"gitexp {__version__} here cannot read the notes of gitexp {request.get('client_version')!r} "
                       f"(agent protocol {theirs!r}, notes schema {schema!r}; here: protocol {PROTOCOL}, "
                       f"schemas {list(NOTES_SCHEMAS)})", "install the same gitexp version on both sides")


# -- probe -----------------------------------------------------------------------------------------
def probe() -> Dict[str, Any]:
    """What the client checks before it pushes (no repository needed)."""
    git = shutil.which("git")
    answer: Dict[str, Any] = {"version": __version__, "protocol": PROTOCOL, "schemas": list(NOTES_SCHEMAS),
                              "python": platform.python_version(), "executable": sys.executable,
                              "host": socket.gethostname(), "git": None, "repo": False}
    if git:
        proc = subprocess.run([git, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        answer["git"] = proc.stdout.strip() or None
    try:
        repo = Repo.discover(".")
    except GitExpError:
        return answer
    root = runs_root(repo)
    usage = disk(root)
    answer.update(repo=True, root=repo.root, runs_root=root, disk_free=usage.free, disk_total=usage.total,
                  bare=False)
    return answer


# -- submit ----------------------------------------------------------------------------------------
def submit(repo: Repo, store: Store, request: Dict[str, Any]) -> Dict[str, Any]:
    check_protocol(request)
    inbox = str(request.get("inbox") or "")
    if not inbox.startswith(INBOX_PREFIX) or "/" in inbox[len(INBOX_PREFIX):] or ".." in inbox:
        raise BadInput(f"not an inbox ref: {inbox!r}")
    started = time.monotonic()
    tip = repo.refs(inbox).get(inbox)
    # Taken before anything else: from now on the client knows a gitexp here has it.
    if not tip or not repo.update_refs([RefUpdate(inbox, None, tip)], "gitexp: inbox taken"):
        raise BadInput(f"{inbox} was not pushed here, or was taken already", "push the experiment commits first")
    deadline = request.get("deadline")
    if isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
        request = {**request, "deadline": started + float(deadline)}
    else:
        request = {**request, "deadline": None}
    return _submit(repo, store, request, inbox, tip)


def _past_deadline(request: Dict[str, Any]) -> None:
    if request["deadline"] is not None and time.monotonic() > request["deadline"]:
        raise BadInput("the client stopped waiting for this submission; nothing recorded")


def _submit(repo: Repo, store: Store, request: Dict[str, Any], inbox: str, tip: str) -> Dict[str, Any]:
    from ..targets import Target
    from .base import Made
    from .registry import runner_class

    parents = [p.decode() for p in repo.commit_object(tip).parents]
    items = request.get("exps") or []
    if not isinstance(items, list) or [i.get("sha") for i in items if isinstance(i, dict)] != parents:
        raise BadInput("the experiments sent do not match the commits pushed to " + inbox)
    runner_name = str(request.get("runner") or "local")
    cls = runner_class(runner_name)
    if cls.name != runner_name:
        raise BadInput(f"unknown runner {runner_name!r} here (gitexp {__version__})")
    options = {k: v for k, v in (request.get("options") or {}).items() if k in cls.OPTIONS}
    target = Target("", runner_name, {"runner": runner_name, **options})
    here = store.experiment_refs()
    taken = set(here)
    exps, configs, missing = [], [], []
    for item in items:
        summary = dict(item.get("summary") or {})
        problem = summary_problem(summary)
        if problem:
            raise BadInput(f"summary of {short(item['sha'])}: {problem}")
        wanted = str(item.get("name") or summary.get("name") or short(item["sha"]))
        previous = item.get("previous")
        # A new attempt (resume, retry) of an experiment this side has at the attempt it
        # continues: its ref moves (compare-and-swap), under the same name.
        follows = isinstance(previous, str) and here.get(wanted) == previous
        name = wanted if follows else free_name(wanted, taken)
        summary.pop("target", None)  # here it runs on this side's own runner
        config = stored_config(repo, item["sha"])
        absent = [p for p in config.files if not os.path.exists(p if os.path.isabs(p) else os.path.join(repo.root, p))]
        exp = Experiment(item["sha"], name, summary, previous=previous if follows else None)
        if absent:
            missing.append((exp, absent))
        else:
            exps.append(exp)
            configs.append(config)
    details = request.get("details") or {}
    _past_deadline(request)
    if missing:
        _record_failed(store, missing, details)
    recorded: List[Experiment] = []
    warnings: List[str] = []
    if exps:
        runner = cls(repo, store, target)
        per_exp = {e.sha: details.get(e.sha) or {} for e in exps}
        recorded = runner.submit(Made(exps, configs, {}, request.get("max_parallel"), per_exp))
        warnings = runner.warnings
    return {"exps": [_brief(e) for e in recorded + [m[0] for m in missing]], "warnings": warnings,
            "host": socket.gethostname()}


def stored_config(repo: Repo, sha: str) -> Any:
    """The experiment's config from its commit (what the executor reads, without importing it)."""
    from ..storedconfig import load_experiment_config

    return load_experiment_config(repo, sha, missing=BadInput)


def _record_failed(store: Store, missing: Sequence[Any], details: Dict[str, Any]) -> None:
    """Experiments whose ``files:`` are not here: recorded failed (preflight), never started."""
    from ..notes import DETAILS_REF, dump_json

    now = time.time()
    exps = []
    for exp, absent in missing:
        exp.summary.update(status=Status.FAILED.value, ended=now, host=socket.gethostname(),
                           reason="preflight: files listed under 'files' do not exist on "
                                  f"{socket.gethostname()}: {', '.join(absent)}")
        exp.summary.pop("creator", None)
        exps.append(exp)
    notes = {(DETAILS_REF, e.sha): dump_json(details[e.sha]) for e in exps if details.get(e.sha)}
    record(store, exps, extra_notes=notes)


def _brief(exp: Experiment) -> Dict[str, Any]:
    from .registry import runner_class

    s = exp.summary
    return {"sha": exp.sha, "name": exp.name, "status": s.get("status"), "reason": s.get("reason"),
            "slurm": s.get("slurm"), "runner": s.get("runner"),
            "handle": s.get(runner_class(str(s.get("runner") or "local")).HANDLE or "-")}


# -- drop, cancel ----------------------------------------------------------------------------------
def drop(repo: Repo, store: Store, request: Dict[str, Any]) -> Dict[str, Any]:
    """Stop and remove experiments the client could not record (``rm --force`` here)."""
    check_protocol(request)
    from . import runner_for

    names = {sha: name for name, sha in store.experiment_refs().items()}
    done = []
    for sha in _shas(request):
        if sha not in names:
            continue
        exp = Experiment(sha, names[sha], store.summary(sha))
        store.remove(exp)
        if exp.status in (Status.QUEUED, Status.PENDING, Status.STARTING, Status.RUNNING):
            runner_for(repo, store, exp).stop_removed(exp)
        shutil.rmtree(run_paths(repo, sha).root, ignore_errors=True)
        done.append(sha)
    return {"dropped": done}


def cancel(repo: Repo, store: Store, request: Dict[str, Any]) -> Dict[str, Any]:
    check_protocol(request)
    from . import runner_for

    names = {sha: name for name, sha in store.experiment_refs().items()}
    results: List[Dict[str, Any]] = []
    for sha in _shas(request):
        if sha not in names:
            results.append({"sha": sha, "error": f"no experiment {short(sha)} on {socket.gethostname()}"})
            continue
        exp = Experiment(sha, names[sha], store.summary(sha))
        try:
            line = runner_for(repo, store, exp).cancel(exp)
            results.append({"sha": sha, "line": line, "summary": store.summary(sha)})
        except GitExpError as exc:
            results.append({"sha": sha, "error": str(exc)})
    return {"results": results}


def _shas(request: Dict[str, Any]) -> List[str]:
    shas = request.get("shas") or []
    if not isinstance(shas, list) or not all(isinstance(s, str) and len(s) == 40 and
                                             all(c in "0123456789abcdef" for c in s) for s in shas):
        raise BadInput("shas must be a list of full commit ids")
    return shas


# -- queue -----------------------------------------------------------------------------------------
def queue(repo: Repo, store: Store, request: Dict[str, Any]) -> Dict[str, Any]:
    check_protocol(request)
    from ..queue import listing

    exps = store.experiments()
    wanted = set(_shas(request)) if request.get("shas") else None
    view = listing(repo, store, exps, bool(request.get("all")), reach=True)
    states = {sha: list(state) for sha, state in view.states.items() if wanted is not None and sha in wanted}
    return {"queued": view.items("queued"), "running": view.items("running"), "done": view.items("done"),
            "states": states, "resources": resources(repo), "host": socket.gethostname()}


def resources(repo: Repo) -> Dict[str, Any]:
    """This host's free resources: GPUs (memory, use), RAM, disk at the run root, CPUs, load."""
    here = disk(runs_root(repo))
    memory = ram()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    answer: Dict[str, Any] = {"gpus": gpu_table(), "ram_available": memory.available, "ram_total": memory.total,
            "disk_free": here.free, "disk_total": here.total, "disk_path": here.path,
            "cpus": os.cpu_count(), "load": load}
    return answer


__all__ = ["PROTOCOL", "NOTES_SCHEMAS", "INBOX_PREFIX", "probe", "submit", "drop", "cancel", "queue"]
