"""Slurm runner: one ``sbatch`` per experiment or job array, states from one ``squeue``.

The batch script runs the same executor as a local run (``python -m gitexp _exec <sha>
--runner slurm``) inside the allocation, so metrics, facts and notes are the same.

Submission is all-or-nothing (:mod:`gitexp.runners.batch`, shared with Grid Engine): the job
is submitted held (``sbatch --hold``), the experiments are recorded, and only then is the job
released (``scontrol release``). If sbatch refuses, nothing is recorded; if recording fails,
the held job is cancelled.

Time limits: jobs are submitted with ``--signal=B:USR1@<signal_warning>`` (the batch shell,
which ``exec``s the executor, gets it); the executor creates ``$GITEXP_STOP_FILE`` and passes
SIGUSR1 on to the program only when it handles it, or as the config's ``warning_signal`` says
(:mod:`gitexp.stopping`): an unhandled SIGUSR1 would kill it. SIGTERM comes at the limit. A
run stopped by the limit or by preemption is recorded ``timeout``.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from ..config import ExperimentConfig
from ..errors import BadInput, GitExpError
from ..lifecycle import ACTIVE, Status
from ..notes import Experiment, Store
from ..repo import Repo
from ..summary import job_problem
from ..targets import Target
from ..transport import LocalTransport, Transport
from ..units import parse_duration, parse_size, slurm_time
from .base import Option, State, gitexp_argv
from .batch import SHARED_FS, BatchRunner, filesystem_warning

__all__ = ["SlurmRunner", "JobRef", "job_of", "SHARED_FS", "filesystem_warning", "stop_reason"]

DEFAULT_WARNING = 120
# Slurm job states and what they mean for an experiment whose executor did not record an end.
PENDING_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                  "SUSPENDED", "STOPPED")
RUNNING_STATES = ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING")
ENDED_AS = {"TIMEOUT": Status.TIMEOUT, "PREEMPTED": Status.TIMEOUT, "DEADLINE": Status.TIMEOUT,
            "CANCELLED": Status.KILLED, "FAILED": Status.FAILED, "NODE_FAIL": Status.FAILED,
            "OUT_OF_MEMORY": Status.FAILED, "BOOT_FAIL": Status.FAILED, "COMPLETED": Status.LOST,
            "SPECIAL_EXIT": Status.FAILED, "REVOKED": Status.LOST}


@dataclass(frozen=True)
class JobRef:
    job: str
    task: Optional[int]

    @property
    def spec(self) -> str:
        return f"{self.job}_{self.task}" if self.task is not None else self.job


def job_of(summary: Dict[str, Any]) -> Optional[JobRef]:
    """The Slurm job of a summary; None when there is none or it is not a plain job id.

    Summaries come from notes anyone can push: a "job" of ``--user=root`` given to scancel
    would cancel every job of that user. Only digits (and an integer task) pass.
    """
    slurm = summary.get("slurm")
    if not isinstance(slurm, dict) or not slurm.get("job"):
        return None
    job, task = slurm.get("job"), slurm.get("task")
    if job_problem(job) is not None or "_" in str(job):
        return None
    if task is not None and (not isinstance(task, int) or isinstance(task, bool) or task < 0):
        return None
    return JobRef(str(job), task)


def check_job_id(text: str) -> str:
    """A job id as sbatch printed it (``123`` or ``123;cluster``), checked before it reaches argv."""
    job = text.strip().split(";")[0]
    if not re.match(r"^[0-9]+$", job):
        raise GitExpError(f"sbatch printed {text.strip()[:80]!r} where a job id was expected; nothing was recorded")
    return job


class SlurmRunner(BatchRunner):
    """sbatch, squeue, scancel and scontrol through ``self.transport``; the batch script is
    written there too, and the job ``cd``s into the repository as the target sees it."""

    name = "slurm"
    OPTIONS: ClassVar[Dict[str, Option]] = {
        "partition": Option("text", "partition (sbatch -p)"),
        "account": Option("text", "account (sbatch -A)"),
        "qos": Option("text", "QOS (sbatch --qos)"),
        "constraint": Option("text", "node features (sbatch -C)"),
        "gres": Option("text", "generic resources, e.g. gpu:1 (sbatch --gres)"),
        "time": Option("duration", "default time limit, e.g. 4h (an experiment's requires.time wins)"),
        "mem": Option("size", "default memory, e.g. 16GB (requires.ram wins)"),
        "cpus": Option("count", "CPUs per task (requires.cpus wins)"),
        "max_parallel": Option("count", "at most this many array tasks at once (%N)"),
        "signal_warning": Option("count", f"seconds before the time limit to send SIGUSR1 (default {DEFAULT_WARNING})"),
        "modules": Option("list", "modules to load before the executor"),
        "setup": Option("list", "shell lines to run before the executor, e.g. 'source venv/bin/activate'"),
        "sbatch": Option("list", "extra #SBATCH lines, e.g. '--exclusive'"),
    }
    SCHEDULER = "Slurm"
    HANDLE = "slurm"
    SCRIPT_SUFFIX = ".sbatch"
    ARRAY_KIND = "job array"
    SUBMIT_TOOLS = ("sbatch",)
    COMMANDS_HINT = "run gitexp on the cluster's login node, or load Slurm's module first"

    def __init__(self, repo: Repo, store: Store, target: Optional[Target] = None,
                 transport: Optional[Transport] = None) -> None:
        super().__init__(repo, store, target or Target("slurm", "slurm"), transport)

    @property
    def remote(self) -> Target:  # the name older callers use
        return self.target

    def max_array_size(self) -> int:
        code, out, _ = self._call([self._tool("scontrol"), "show", "config"])
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
        return int(match.group(1)) if code == 0 and match else 1001

    def array_limit(self) -> int:
        return self.max_array_size() - 1  # MaxArraySize bounds the index: 0..MaxArraySize-1

    # -- submission -----------------------------------------------------------------------------
    def submit_held(self, path: str) -> str:
        code, out, err = self._call([self._tool("sbatch"), "--parsable", "--hold", path])
        if code != 0:
            message = " ".join(line.replace("sbatch: error: ", "") for line in err.strip().splitlines())
            raise BadInput(f"sbatch refused the job for run target '{self.target.name}': {message or out.strip()}",
                           "fix the target's settings (git exp remote list) or the config's requires")
        return check_job_id(out)

    def release(self, job: str) -> None:
        code, _, err = self._call([self._tool("scontrol"), "release", job])
        if code != 0:
            raise GitExpError(f"could not release held Slurm job {job}: {err.strip()}")

    def delete_jobs(self, jobs: Sequence[str]) -> None:
        for job in jobs:
            self._call([self._tool("scancel"), "--", job])

    def handle(self, job: str, index: int, count: int, script: str) -> Dict[str, Any]:
        return {"job": job, "task": index if count > 1 else None, "remote": self.target.name, "script": script}

    def directives(self, config: ExperimentConfig, count: int, folder: str,
                   max_parallel: Optional[int] = None) -> List[str]:
        r, req = self.target, config.requires
        lines = [f"--job-name=gitexp-{config.group or config.name}"[:120]]
        lines.append(f"--output={folder}/%A_%a.out" if count > 1 else f"--output={folder}/%j.out")
        lines.append(f"--chdir={self.root}")
        for key in ("partition", "account", "qos", "constraint"):
            if r.get(key):
                lines.append(f"--{key}={r.get(key)}")
        seconds = req.time or (parse_duration(r.get("time")) if r.get("time") else None)
        if seconds:
            lines.append(f"--time={slurm_time(seconds)}")
        mem = req.ram or (parse_size(r.get("mem")) if r.get("mem") else None)
        if mem:
            lines.append(f"--mem={max(1, -(-mem // (1024 * 1024)))}M")
        cpus = req.cpus or r.get("cpus")
        if cpus:
            lines.append(f"--cpus-per-task={int(cpus)}")
        gres = r.get("gres") or (f"gpu:{req.gpus}" if req.gpus else None)
        if gres:
            lines.append(f"--gres={gres}")
        warning = int(r.get("signal_warning") or DEFAULT_WARNING)
        if seconds:
            warning = min(warning, max(1, seconds // 2))
        lines.append(f"--signal=B:USR1@{warning}")
        if count > 1:
            parallel = max_parallel or r.get("max_parallel")
            lines.append(f"--array=0-{count - 1}" + (f"%{int(parallel)}" if parallel else ""))
        lines += r.list("sbatch")
        return lines

    def job_script(self, config: ExperimentConfig, exps: Sequence[Experiment], folder: str,
                     max_parallel: Optional[int] = None) -> str:
        argv = gitexp_argv("_exec", python=self.target.python)
        lines = ["#!/bin/bash"]
        lines += [f"#SBATCH {d}" for d in self.directives(config, len(exps), folder, max_parallel)]
        lines += ["# written by gitexp: runs the gitexp executor for each experiment of this job", "set -u"]
        lines += [f"module load {shlex.quote(m)}" for m in self.target.list("modules")]
        lines += self.target.list("setup")
        root = shlex.quote(self.root)
        lines += [
            f"if [ ! -d {root} ]; then",
            f"  echo \"gitexp: \"{root}\" is not visible on $(hostname): the repository must be on a"
            " filesystem shared with the compute nodes\" >&2",
            "  exit 97",
            "fi",
            "shas=(" + " ".join(e.sha for e in exps) + ")",
            "sha=${shas[${SLURM_ARRAY_TASK_ID:-0}]}",
            "export GITEXP_KILL_GRACE=${GITEXP_KILL_GRACE:-3}",
            "exec " + " ".join(shlex.quote(a) for a in argv) + " \"$sha\" --runner slurm",
        ]
        return "\n".join(lines) + "\n"

    # -- state ----------------------------------------------------------------------------------
    def squeue_table(self) -> Dict[Tuple[str, Optional[int]], Tuple[str, str]]:
        """(job, task) -> (state, reason) for every job of the target's user, from one ``squeue``."""
        proc = self.transport.run([self._tool("squeue"), "-h", "-r", "-t", "all", "-u", self.transport.user(),
                                   "-o", "%i|%F|%K|%T|%r"])
        if proc.returncode != 0:
            raise GitExpError(f"squeue failed: {proc.stderr.decode(errors='replace').strip()}")
        return parse_squeue(proc.stdout.decode(errors="replace"))

    def states(self, exps: Sequence[Experiment]) -> Dict[str, State]:
        """Our status merged with Slurm's, for all of them from one ``squeue``."""
        open_ = [e for e in exps if e.status in ACTIVE]
        out: Dict[str, State] = {e.sha: (e.status, None) for e in exps}
        if not open_:
            return out
        try:
            table = self.squeue_table()
        except GitExpError as exc:
            return {**out, **{e.sha: (e.status, f"cannot ask Slurm: {exc}") for e in open_}}
        for exp in open_:
            ref = job_of(exp.summary)
            out[exp.sha] = slurm_status(exp.status, table.get((ref.job, ref.task)) if ref else None)
        return out

    def scancel(self, ref: JobRef) -> None:
        """``scancel -- <job>``: the id is checked (job_of) and ``--`` ends scancel's options."""
        code, _, err = self._call([self._tool("scancel"), "--", ref.spec])
        if code != 0:
            raise GitExpError(f"scancel {ref.spec} failed: {err.strip()}")

    def stop_job_check(self, exp: Experiment) -> None:
        if job_of(exp.summary) is None:
            raise BadInput(f"{exp.name} has no usable Slurm job id recorded; nothing was cancelled",
                           f"see git notes --ref=exps show {exp.sha}")

    def stop_job(self, exp: Experiment) -> str:
        ref = job_of(exp.summary)
        if ref is None:
            raise BadInput("no usable Slurm job id was recorded: cancel its job by hand")
        self.scancel(ref)
        return f"scancel {ref.spec}"

    @classmethod
    def stop_reason(cls, summary: Dict[str, Any], saw_warning: bool, signalled: bool = True) -> Optional[str]:
        return stop_reason(summary, saw_warning, signalled)


def parse_squeue(text: str) -> Dict[Tuple[str, Optional[int]], Tuple[str, str]]:
    """``squeue -o %i|%F|%K|%T|%r`` lines as (job, task) -> (state, reason)."""
    table: Dict[Tuple[str, Optional[int]], Tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        job_id, array_job, task, state, reason = parts
        if task in ("N/A", "", None):
            table[(job_id, None)] = (state, reason)
        elif task.isdigit():
            table[(array_job, int(task))] = (state, reason)
    return table


def slurm_status(recorded: str, state: Optional[Tuple[str, str]]) -> Tuple[str, Optional[str]]:
    """Our status merged with Slurm's view; the reason says what Slurm said."""
    if recorded not in (Status.PENDING, Status.STARTING, Status.RUNNING):
        return recorded, None
    if state is None:
        return Status.LOST, "the job left Slurm's queue without a result from gitexp"
    slurm_state, reason = state
    base = slurm_state.split()[0].rstrip("+")
    why = f"Slurm: {base}" + (f" ({reason})" if reason and reason != "None" else "")
    if base in PENDING_STATES:
        return Status.PENDING, why
    if base in RUNNING_STATES:
        return (Status.RUNNING if recorded == Status.RUNNING else Status.STARTING), why
    return ENDED_AS.get(base, Status.LOST), why


def stop_reason(summary: Dict[str, Any], saw_warning: bool, signalled: bool = True) -> Optional[str]:
    """Why a run inside a Slurm job was stopped: cancel, or time limit/preemption.

    Runs on the node (the executor asks), so it asks this machine's ``scontrol``.
    ``signalled``: the executor itself got SIGTERM, so something stopped the job ("killed"
    when nothing more specific is known). Otherwise (only the program died of a signal,
    which happens when Slurm signals the program first) None means no evidence of a stop.
    """
    if summary.get("cancel_requested"):
        return Status.KILLED
    if saw_warning:
        return Status.TIMEOUT
    job = os.environ.get("SLURM_JOB_ID")
    node = LocalTransport()
    scontrol = node.which("scontrol")
    if job and job.isdigit() and scontrol:  # digits only: nothing else may reach scontrol's argv
        text = node.run([scontrol, "-o", "show", "job", job]).stdout.decode(errors="replace")
        if re.search(r"JobState=(TIMEOUT|PREEMPTED|DEADLINE)|Reason=(TimeLimit|Preempt)", text):
            return Status.TIMEOUT
        if re.search(r"JobState=CANCELLED", text):
            return Status.KILLED
    return Status.KILLED if signalled else None

