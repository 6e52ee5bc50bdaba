"""Slurm runner: one ``sbatch`` per experiment or job array, states from one ``squeue``.

The batch script runs the same executor as a local run (``python -m gitexp _exec <sha>
--runner slurm``) inside the allocation, so metrics, facts and notes are the same.

Submission is all-or-nothing: the commits are made first (objects only), the job is
submitted held (``sbatch --hold``), the experiments are recorded (refs and notes in one
transaction), and only then is the job released. If sbatch refuses, nothing is recorded;
if recording fails, the held job is cancelled.

Time limits: jobs are submitted with ``--signal=B:USR1@<signal_warning>``; the executor passes
SIGUSR1 on to the program (and creates ``$GITEXP_STOP_FILE``) so it can checkpoint, then
SIGTERM at the limit. A run stopped by the limit or by preemption is recorded ``timeout``.
"""
from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import ExperimentConfig
from ..errors import BadInput, GitExpError
from ..experiments import make_experiments, take_snapshot
from ..notes import DETAILS_REF, Experiment, Store, dump_json
from ..paths import runs_root
from ..remotes import Remote
from ..repo import Repo
from ..summary import job_problem
from ..units import parse_duration, parse_size, slurm_time
from .base import Runner, Transport, gitexp_argv

DEFAULT_WARNING = 120
# Slurm job states and what they mean for an experiment whose executor did not record an end.
PENDING_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                  "SUSPENDED", "STOPPED")
RUNNING_STATES = ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING")
ENDED_AS = {"TIMEOUT": "timeout", "PREEMPTED": "timeout", "DEADLINE": "timeout", "CANCELLED": "killed",
            "FAILED": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
            "COMPLETED": "lost", "SPECIAL_EXIT": "failed", "REVOKED": "lost"}
SHARED_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "fuse.sshfs", "panfs",
             "fuse.glusterfs", "glusterfs", "wekafs", "fuse.juicefs")


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


class SlurmRunner(Runner):
    def __init__(self, repo: Repo, store: Store, remote: Remote, transport: Optional[Transport] = None) -> None:
        super().__init__(name="slurm", transport=transport or Transport())
        self.repo = repo
        self.store = store
        self.remote = remote

    # -- commands -------------------------------------------------------------------------------
    def _tool(self, name: str) -> str:
        path = shutil.which(name)
        if not path:
            raise BadInput(f"{name} not found on PATH: remote '{self.remote.name}' needs Slurm's commands here",
                           "run gitexp on the cluster's login node, or load Slurm's module first")
        return path

    def _call(self, argv: Sequence[str], input: Optional[bytes] = None) -> Tuple[int, str, str]:
        proc = self.transport.run(argv, cwd=self.repo.root, input=input)
        return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")

    def max_array_size(self) -> int:
        code, out, _ = self._call([self._tool("scontrol"), "show", "config"])
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
        return int(match.group(1)) if code == 0 and match else 1001

    # -- submission -----------------------------------------------------------------------------
    def submit_configs(self, configs: List[ExperimentConfig], max_parallel: Optional[int] = None) -> List[Experiment]:
        """Commit, submit held, record, release: all of it or nothing."""
        sbatch = self._tool("sbatch")
        snap = take_snapshot(self.repo, configs[0].snapshot)
        with self.repo.batch():
            exps = make_experiments(self.repo, self.store, snap, configs, "pending")
            for exp in exps:
                exp.summary["runner"] = "slurm"
            return self._submit(sbatch, exps, configs, max_parallel, snap.details())

    def _submit(self, sbatch: str, exps: List[Experiment], configs: List[ExperimentConfig],
                max_parallel: Optional[int], snap_details: Optional[Dict[str, Any]] = None) -> List[Experiment]:
        limit = max(1, self.max_array_size() - 1)
        chunks = [exps[i:i + limit] for i in range(0, len(exps), limit)] if len(exps) > 1 else [exps]
        folder = os.path.join(runs_root(self.repo), "slurm")
        os.makedirs(folder, exist_ok=True)
        held: List[str] = []
        scripts: Dict[str, str] = {}
        try:
            for chunk in chunks:
                script = self.batch_script(configs[0], chunk, folder, max_parallel)
                path = os.path.join(folder, f"{chunk[0].sha[:12]}.sbatch")
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(script)
                code, out, err = self._call([sbatch, "--parsable", "--hold", path])
                if code != 0:
                    message = " ".join(line.replace("sbatch: error: ", "") for line in err.strip().splitlines())
                    raise BadInput(f"sbatch refused the job for remote '{self.remote.name}': {message or out.strip()}",
                                   "fix the remote's settings (git exp remote list) or the config's requires")
                job = check_job_id(out)
                held.append(job)
                for index, exp in enumerate(chunk):
                    exp.summary["slurm"] = {"job": job, "task": index if len(chunk) > 1 else None,
                                            "remote": self.remote.name, "script": path}
                    scripts[exp.sha] = script
        except BaseException:
            self._cancel_jobs(held)
            raise
        details = {(DETAILS_REF, e.sha): dump_json({**(snap_details or {}), "batch_script": scripts[e.sha]})
                   for e in exps}
        try:
            self.store.create_batch(exps, extra_notes=details)
        except BaseException:
            self._cancel_jobs(held)  # nothing was recorded
            raise
        try:
            for job in held:
                code, _, err = self._call([self._tool("scontrol"), "release", job])
                if code != 0:
                    raise GitExpError(f"could not release held Slurm job {job}: {err.strip()}")
        except BaseException as exc:
            self._cancel_jobs(held)
            self._mark_failed(exps, f"submission failed after recording: {exc}")
            raise
        return exps

    def _cancel_jobs(self, jobs: Sequence[str]) -> None:
        for job in jobs:
            self._call([self._tool("scancel"), "--", job])

    def _mark_failed(self, exps: Sequence[Experiment], reason: str) -> None:
        for exp in exps:
            self.store.update_summary(exp.sha, lambda s: {**s, "status": "failed", "reason": reason},
                                      message="gitexp: submission failed")

    def directives(self, config: ExperimentConfig, count: int, folder: str,
                   max_parallel: Optional[int] = None) -> List[str]:
        r, req = self.remote, config.requires
        lines = [f"--job-name=gitexp-{config.group or config.name}"[:120]]
        lines.append(f"--output={folder}/%A_%a.out" if count > 1 else f"--output={folder}/%j.out")
        lines.append(f"--chdir={self.repo.root}")
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

    def batch_script(self, config: ExperimentConfig, exps: Sequence[Experiment], folder: str,
                     max_parallel: Optional[int] = None) -> str:
        python = self.remote.get("python")
        argv = gitexp_argv("_exec")
        if python:
            argv[0] = str(python)
        lines = ["#!/bin/bash"]
        lines += [f"#SBATCH {d}" for d in self.directives(config, len(exps), folder, max_parallel)]
        lines += ["# written by gitexp: runs the gitexp executor for each experiment of this job", "set -u"]
        lines += [f"module load {shlex.quote(m)}" for m in self.remote.list("modules")]
        lines += self.remote.list("setup")
        root = shlex.quote(self.repo.root)
        lines += [
            f"if [ ! -d {root} ]; then",
            f"  echo \"gitexp: {self.repo.root} is not visible on $(hostname): the repository must be on a"
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
    def states(self, exps: Sequence[Experiment]) -> Dict[str, str]:
        table = squeue_table(self.transport)
        out = {}
        for exp in exps:
            ref = job_of(exp.summary)
            if ref and (ref.job, ref.task) in table:
                out[exp.sha] = table[(ref.job, ref.task)][0]
        return out

    def scancel(self, ref: JobRef) -> None:
        """``scancel -- <job>``: the id is checked (job_of) and ``--`` ends scancel's options."""
        code, _, err = self._call([self._tool("scancel"), "--", ref.spec])
        if code != 0:
            raise GitExpError(f"scancel {ref.spec} failed: {err.strip()}")

    def cancel(self, exp: Experiment) -> bool:
        ref = job_of(exp.summary)
        if ref is None:
            return False
        self.store.update_summary(exp.sha, lambda s: {**s, "cancel_requested": True}, message="gitexp: cancel")
        self.scancel(ref)

        def never_started(s: Dict[str, Any]) -> Optional[Dict[str, Any]]:
            if s.get("status") != "pending":
                return None  # the executor runs and records `killed` itself
            return {**s, "status": "killed", "reason": "cancelled before it started (scancel)"}

        self.store.update_summary(exp.sha, never_started, message="gitexp: cancelled")
        return True


def squeue_table(transport: Optional[Transport] = None) -> Dict[Tuple[str, Optional[int]], Tuple[str, str]]:
    """(job, task) -> (state, reason) for every job of this user, from one ``squeue`` call."""
    squeue = shutil.which("squeue")
    if not squeue:
        raise GitExpError("squeue not found on PATH")
    proc = (transport or Transport()).run([squeue, "-h", "-r", "-t", "all", "-u", getpass.getuser(),
                                           "-o", "%i|%F|%K|%T|%r"])
    if proc.returncode != 0:
        raise GitExpError(f"squeue failed: {proc.stderr.decode(errors='replace').strip()}")
    table: Dict[Tuple[str, Optional[int]], Tuple[str, str]] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
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
    if recorded not in ("pending", "starting", "running"):
        return recorded, None
    if state is None:
        return "lost", "the job left Slurm's queue without a result from gitexp"
    slurm_state, reason = state
    base = slurm_state.split()[0].rstrip("+")
    why = f"Slurm: {base}" + (f" ({reason})" if reason and reason != "None" else "")
    if base in PENDING_STATES:
        return "pending", why
    if base in RUNNING_STATES:
        return ("running" if recorded == "running" else "starting"), why
    return ENDED_AS.get(base, "lost"), why


def stop_reason(summary: Dict[str, Any], saw_warning: bool, signalled: bool = True) -> Optional[str]:
    """Why a run inside a Slurm job was stopped: cancel, or time limit/preemption.

    ``signalled``: the executor itself got SIGTERM, so something stopped the job ("killed"
    when nothing more specific is known). Otherwise (only the program died of a signal,
    which happens when Slurm signals the program first) None means no evidence of a stop.
    """
    if summary.get("cancel_requested"):
        return "killed"
    if saw_warning:
        return "timeout"
    job = os.environ.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol")
    if job and job.isdigit() and scontrol:  # digits only: nothing else may reach scontrol's argv
        proc = Transport().run([scontrol, "-o", "show", "job", job])
        text = proc.stdout.decode(errors="replace")
        if re.search(r"JobState=(TIMEOUT|PREEMPTED|DEADLINE)|Reason=(TimeLimit|Preempt)", text):
            return "timeout"
        if re.search(r"JobState=CANCELLED", text):
            return "killed"
    return "killed" if signalled else None


def filesystem_warning(path: str) -> Optional[str]:
    """A note when ``path`` is on a local filesystem, which other nodes cannot see."""
    try:
        import psutil

        best = None
        for part in psutil.disk_partitions(all=True):
            if path.startswith(part.mountpoint) and (best is None or len(part.mountpoint) > len(best.mountpoint)):
                best = part
    except Exception:  # noqa: BLE001 - informational only
        return None
    if best is None or best.fstype in SHARED_FS:
        return None
    return (f"note: {path} is on a local {best.fstype} filesystem ({best.mountpoint}); jobs on other nodes "
            "cannot see it: keep the repository on a filesystem shared with the compute nodes")

