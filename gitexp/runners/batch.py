"""What batch schedulers share (Slurm, Grid Engine): a job script, a held submission, release.

A batch runner writes one job script per job (an array job for a sweep) that runs the one
executor (``python -m gitexp _exec <sha> --runner <name>``) inside the allocation, and submits
it *held*. Submission is all-or-nothing (:meth:`BatchRunner.submit`): the commits are made
first (objects only), the jobs are submitted held, the experiments are recorded (refs and
notes in one transaction), and only then are the jobs released. A refusal records nothing and
deletes the jobs already held; a failed recording deletes them too; a failed release marks
the recorded experiments ``failed``.

A subclass says how: :meth:`submit_held` (the scheduler's refusal as :class:`BadInput`, its
own words), :meth:`release`, :meth:`delete_jobs`, :meth:`job_script`, :meth:`max_array_size`,
and the handle it keeps under ``summary[HANDLE]`` (``{"job": "123", "task": ...}``). Job ids
read back from notes are untrusted: :func:`plain_job` lets only digits through.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from ..config import ExperimentConfig
from ..errors import BadInput, GitExpError
from ..evidence import record_submission, submitted_here
from ..lifecycle import ACTIVE, Status, record, transition
from ..notes import Experiment
from ..transport import LocalTransport
from .base import Made, Runner, Stopped, make

SHARED_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "fuse.sshfs", "panfs",
             "fuse.glusterfs", "glusterfs", "wekafs", "fuse.juicefs")
_DIGITS = re.compile(r"^[0-9]{1,18}$")


def plain_job(value: Any) -> Optional[str]:
    """A job id from a note as a string of digits, or None: anything else could become an
    option of the scheduler's commands (``--user=root`` given to scancel cancels every job)."""
    if value.__class__ is int and value >= 0:
        value = str(value)
    return value if isinstance(value, str) and _DIGITS.match(value) else None


def plain_task(value: Any) -> Optional[int]:
    """An array task index from a note (an int >= 0), or None."""
    return value if value.__class__ is int and value >= 0 else None


class BatchRunner(Runner):
    """The submission protocol of a batch scheduler; its commands go through ``self.transport``."""

    SCHEDULER: ClassVar[str] = "?"  # in messages: "Slurm", "Grid Engine"
    HANDLE: ClassVar[str] = "?"  # the summary key of the job handle
    SCRIPT_SUFFIX: ClassVar[str] = ".job"
    ARRAY_KIND: ClassVar[str] = "array job"  # in messages: "Slurm job array 12", "Grid Engine array job 12"
    COMMANDS_HINT: ClassVar[str] = "run gitexp on the cluster's login node"
    SUBMIT_TOOLS: ClassVar[Tuple[str, ...]] = ()  # checked before anything is written
    INITIAL_STATUS = Status.PENDING

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tools: Dict[str, str] = {}

    # -- commands -------------------------------------------------------------------------------
    def _tool(self, name: str) -> str:
        if name not in self._tools:
            path = self.transport.which(name)
            if not path:
                where = "here" if isinstance(self.transport, LocalTransport) else f"on {self.transport.name}"
                raise BadInput(f"{name} not found on PATH {where}: run target '{self.target.name}' needs "
                               f"{self.SCHEDULER}'s commands", self.COMMANDS_HINT)
            self._tools[name] = path
        return self._tools[name]

    def _call(self, argv: Sequence[str], input: Optional[bytes] = None) -> Tuple[int, str, str]:
        proc = self.transport.run(argv, cwd=self.root, input=input)
        return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")

    # -- what a scheduler provides ----------------------------------------------------------------
    def max_array_size(self) -> int:
        raise NotImplementedError

    def array_limit(self) -> int:
        """The most experiments one array job may hold."""
        return self.max_array_size()

    def job_script(self, config: ExperimentConfig, exps: Sequence[Experiment], folder: str,
                   max_parallel: Optional[int] = None) -> str:
        raise NotImplementedError

    def submit_held(self, path: str) -> str:
        """Submit the job script at ``path`` held; its job id (digits), or BadInput."""
        raise NotImplementedError

    def release(self, job: str) -> None:
        raise NotImplementedError

    def delete_jobs(self, jobs: Sequence[str]) -> None:
        """Remove jobs (best effort: used while undoing a submission)."""
        raise NotImplementedError

    def handle(self, job: str, index: int, count: int, script: str) -> Dict[str, Any]:
        """What the summary keeps under ``HANDLE`` for experiment ``index`` of a job of ``count``."""
        raise NotImplementedError

    # -- submission -----------------------------------------------------------------------------
    def submit_configs(self, configs: List[ExperimentConfig], max_parallel: Optional[int] = None) -> List[Experiment]:
        """Commit, submit held, record, release: all of it or nothing."""
        with self.repo.batch():
            return self.submit(make(self.repo, self.store, configs, self.INITIAL_STATUS, max_parallel))

    def chunks(self, exps: List[Experiment]) -> List[List[Experiment]]:
        if len(exps) <= 1:
            return [exps]
        limit = max(1, self.array_limit())
        return [exps[i:i + limit] for i in range(0, len(exps), limit)]

    def submit(self, made: Made) -> List[Experiment]:
        """Submit held, record (refs and ``pending`` notes in one transaction), release."""
        for tool in self.SUBMIT_TOOLS:
            self._tool(tool)
        exps = made.exps
        for exp in exps:
            exp.summary.update(status=Status.PENDING.value, runner=self.name)
            exp.summary.pop("creator", None)
            if self.target.name:
                exp.summary["target"] = self.target.name
        if isinstance(self.transport, LocalTransport):
            warning = filesystem_warning(self.root)
            if warning:
                self.warnings.append(warning)
        folder = os.path.join(self.runs_dir(), self.name)
        held: List[str] = []
        scripts: Dict[str, Dict[str, Any]] = {}
        try:
            chunks = self.chunks(exps)
            code, _, err = self._call(["mkdir", "-p", "--", folder])
            if code != 0:
                raise GitExpError(f"cannot create {folder} for the job scripts: {err.strip()[:300]}")
            for chunk in chunks:
                script = self.job_script(made.configs[0], chunk, folder, made.max_parallel)
                path = os.path.join(folder, f"{chunk[0].sha[:12]}{self.SCRIPT_SUFFIX}")
                self.transport.write_file(path, script.encode())
                job = self.submit_held(path)
                held.append(job)
                for index, exp in enumerate(chunk):
                    exp.summary[self.HANDLE] = self.handle(job, index, len(chunk), path)
                    scripts[exp.sha] = {"batch_script": script}
        except BaseException:
            self.delete_jobs(held)
            raise
        try:
            record(self.store, exps, extra_notes=made.detail_notes(scripts))
        except BaseException:
            self.delete_jobs(held)  # nothing was recorded
            raise
        for job in held:  # the local evidence that these jobs are ours to cancel
            record_submission(self.repo, self.name, job,
                              [e.sha for e in exps if (e.summary.get(self.HANDLE) or {}).get("job") == job])
        try:
            for job in held:
                self.release(job)
        except BaseException as exc:
            self.delete_jobs(held)
            self.mark_failed(exps, f"submission failed after recording: {exc}")
            raise
        return exps

    def submitted(self, exps: Sequence[Experiment]) -> str:
        jobs = sorted({str((exp.summary.get(self.HANDLE) or {}).get("job")) for exp in exps})
        kind = self.ARRAY_KIND if len(exps) > 1 else "job"
        return (f"submitted {len(exps)} experiment(s) to {self.target.name} as {self.SCHEDULER} {kind} "
                f"{', '.join(jobs)}; see git exp queue --on {self.target.name}")

    def mark_failed(self, exps: Sequence[Experiment], reason: str) -> None:
        for exp in exps:
            transition(self.store, exp.sha, Status.FAILED, {"reason": reason, "ended": time.time()},
                       message="gitexp: submission failed")

    # -- cancel ---------------------------------------------------------------------------------
    def stop_job(self, exp: Experiment) -> str:
        """Ask the scheduler to end the job (or task) of ``exp``; its spec for messages.
        BadInput when the note holds no usable job id."""
        raise NotImplementedError

    def owns_job(self, exp: Experiment) -> Optional[str]:
        """None when this repository submitted ``exp``'s job; else why it may not be cancelled here.

        The job id comes from a note, which may have been pulled: only a job this repository
        recorded submitting for this very run is ever cancelled (``gitexp.evidence``).
        """
        job = plain_job((exp.summary.get(self.HANDLE) or {}).get("job"))
        if job is None or submitted_here(self.repo, self.name, job, exp.sha):
            return None  # no usable id: stop_job_check says so
        return (f"{self.SCHEDULER} job {job} of {exp.name} was not submitted from this repository (no record of "
                "that submission here); nothing was cancelled")

    def cancel(self, exp: Experiment) -> str:
        """Mark the cancel (so the executor records ``killed``), ask the scheduler, and record
        ``killed`` here only for a job that never started; a running executor records it."""
        status = self.states([exp])[exp.sha][0]
        if status not in ACTIVE:
            raise BadInput(f"{exp.name} is {status}, not pending or running: nothing to cancel")
        self.stop_job_check(exp)
        foreign = self.owns_job(exp)
        if foreign:
            raise GitExpError(foreign, "cancel it where it was submitted, or with the scheduler's own command")
        self.store.update_summary(exp.sha, lambda s: {**s, "cancel_requested": True}, message="gitexp: cancel")
        spec = self.stop_job(exp)
        transition(self.store, exp.sha, Status.KILLED,
                   {"reason": f"cancelled before it started ({spec})", "ended": time.time()},
                   only_from=[Status.PENDING], message="gitexp: cancelled")
        for _ in range(150):
            if self.store.summary(exp.sha).get("status") not in ACTIVE:
                break
            time.sleep(0.1)
        return f"cancelled {exp.name} ({spec}; {self.store.summary(exp.sha).get('status')})"

    def stop_job_check(self, exp: Experiment) -> None:
        """BadInput before anything is written when ``exp`` has no usable job id."""

    def stop_removed(self, exp: Experiment) -> Stopped:
        foreign = self.owns_job(exp)
        if foreign:
            return Stopped(foreign)
        try:
            return Stopped(f"cancelled {self.stop_job(exp)}")
        except GitExpError as exc:
            return Stopped(f"could not cancel its {self.SCHEDULER} job: {exc}")


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
