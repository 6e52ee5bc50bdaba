"""Grid Engine runner (SGE, Son of Grid Engine, OGE, Altair/Univa): qsub, one qstat, qdel.

One job per experiment, one array job (``qsub -t 1-N``, ``-tc`` for max_parallel) per sweep,
submitted held (``qsub -h``) and released (``qrls``) once recorded: see
:mod:`gitexp.runners.batch`. The job script runs the one executor (``python -m gitexp _exec
<sha> --runner sge``), so metrics, facts and notes are the same as everywhere else.

The time-limit contract is the Slurm runner's: SIGUSR1 a warning interval before the limit,
then SIGTERM, recorded ``timeout``. Grid Engine ends a job at ``h_rt`` with SIGKILL, so:
``h_rt`` is the limit, ``s_rt`` the warning (Grid Engine sends SIGUSR1 to the job's process
group, executor included; it passes it on to a program that handles it, see
:mod:`gitexp.stopping`), and the job script itself sends
SIGTERM to the executor ``GITEXP_KILL_GRACE + 5`` seconds before ``h_rt`` so that it stops the
program and records the end in time. Jobs are submitted with ``-notify``: ``qdel`` of a
running job sends SIGUSR2 first, which the job script (the executor ignores it) turns into
SIGTERM, so a cancelled run is recorded ``killed`` by its executor.

Job ids in notes are untrusted: only digits reach ``qdel``/``qacct`` (:func:`job_of`), and a
job id is always a separate argv item. Resource names differ between clusters (``h_vmem`` or
``mem_free``, ``gpu`` or ``cuda``): the target names them (``ram_resource``, ``gpu_resource``).
"""
from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from ..config import ExperimentConfig
from ..errors import BadInput, GitExpError
from ..lifecycle import ACTIVE, Status
from ..notes import Experiment
from ..units import parse_duration, parse_size
from .base import Option, State, gitexp_argv
from .batch import BatchRunner, plain_job

DEFAULT_WARNING = 120
DEFAULT_RAM_RESOURCE = "h_vmem"
DEFAULT_MAX_TASKS = 75000
# The job script's own SIGTERM comes this much (plus the executor's kill grace) before h_rt.
TERM_MARGIN = 5
# What qacct's "failed" codes mean for a run whose executor recorded no end.
FAILED_AS = {37: Status.TIMEOUT, 24: Status.FAILED, 26: Status.FAILED, 27: Status.FAILED, 28: Status.FAILED,
             100: Status.KILLED}
_NAME = re.compile(r"^[A-Za-z0-9_.@:/+=-]+$")  # queue, PE, resource, project names: one word


@dataclass(frozen=True)
class JobRef:
    job: str
    task: Optional[int]  # Grid Engine's task id (from 1), None for a job that is not an array

    @property
    def spec(self) -> str:
        return f"{self.job}.{self.task}" if self.task is not None else self.job

    def argv(self) -> List[str]:
        """For qdel: the job, and ``-t <task>`` for one task of an array."""
        return [self.job, "-t", str(self.task)] if self.task is not None else [self.job]


def job_of(summary: Dict[str, Any]) -> Optional[JobRef]:
    """The Grid Engine job of a summary; None when there is none or it is not plain digits."""
    sge = summary.get("sge")
    if not isinstance(sge, dict):
        return None
    job, task = plain_job(sge.get("job")), sge.get("task")
    if job is None or (task is not None and (task.__class__ is not int or task < 1)):
        return None
    return JobRef(job, task)


def check_job_id(text: str) -> str:
    """The job id ``qsub -terse`` printed (``123``, or ``123.1-6:1`` for an array)."""
    match = re.match(r"^([0-9]{1,18})(\.[0-9]+-[0-9]+:[0-9]+)?$", text.strip())
    if not match:
        raise GitExpError(f"qsub printed {text.strip()[:80]!r} where a job id was expected; nothing was recorded")
    return match.group(1)


def _word(key: str, value: Any) -> str:
    text = str(value)
    if not _NAME.match(text):
        raise BadInput(f"run target setting {key} {text!r} must be a single word for Grid Engine")
    return text


class SgeRunner(BatchRunner):
    """qsub, qrls, qstat, qacct and qdel through ``self.transport``."""

    name = "sge"
    SCHEDULER = "Grid Engine"
    HANDLE = "sge"
    SCRIPT_SUFFIX = ".sh"
    SUBMIT_TOOLS = ("qsub", "qrls", "qdel")
    COMMANDS_HINT = "run gitexp on the cluster's login node, or load Grid Engine's settings (settings.sh) first"
    OPTIONS: ClassVar[Dict[str, Option]] = {
        "queue": Option("text", "qsub -q: the cluster queue(s), e.g. all.q"),
        "pe": Option("text", "qsub -pe: the parallel environment that requires.cpus asks slots of"),
        "project": Option("text", "qsub -P: the project"),
        "ram_resource": Option("text", f"the resource requires.ram asks, per slot (default {DEFAULT_RAM_RESOURCE}; "
                                       "e.g. mem_free)"),
        "gpu_resource": Option("text", "the resource requires.gpus asks, e.g. gpu"),
        "time": Option("duration", "default time limit, e.g. 4h (h_rt; an experiment's requires.time wins)"),
        "mem": Option("size", "default memory, e.g. 16GB (requires.ram wins)"),
        "cpus": Option("count", "default slots of the parallel environment (requires.cpus wins)"),
        "max_parallel": Option("count", "at most this many array tasks at once (-tc)"),
        "signal_warning": Option("count", f"seconds before the time limit to send SIGUSR1 (s_rt; default {DEFAULT_WARNING})"),
        "modules": Option("list", "modules to load before the executor"),
        "setup": Option("list", "shell lines to run before the executor, e.g. 'source venv/bin/activate'"),
        "qsub": Option("list", "extra #$ lines, e.g. '-l scratch=10G'"),
    }

    # -- submission -----------------------------------------------------------------------------
    def max_array_size(self) -> int:
        code, out, _ = self._call([self._tool("qconf"), "-sconf", "global"])
        match = re.search(r"^max_aj_tasks\s+(\d+)", out, re.M)
        size = int(match.group(1)) if code == 0 and match else DEFAULT_MAX_TASKS
        return size if size > 0 else DEFAULT_MAX_TASKS  # 0: no limit

    def submit_held(self, path: str) -> str:
        code, out, err = self._call([self._tool("qsub"), "-terse", "-h", path])
        if code != 0:
            lines = [line.strip() for line in (err or out).splitlines() if line.strip() and line.strip() != "Exiting."]
            message = " ".join(line.replace("Unable to run job: ", "") for line in lines)
            raise BadInput(f"qsub refused the job for run target '{self.target.name}': {message or 'no reason given'}",
                           "fix the target's settings (git exp remote list) or the config's requires")
        return check_job_id(out)

    def release(self, job: str) -> None:
        code, _, err = self._call([self._tool("qrls"), "-h", "u", job])
        if code != 0:
            raise GitExpError(f"could not release held Grid Engine job {job}: {err.strip()}")

    def delete_jobs(self, jobs: Sequence[str]) -> None:
        for job in jobs:
            self._call([self._tool("qdel"), job])

    def handle(self, job: str, index: int, count: int, script: str) -> Dict[str, Any]:
        return {"job": job, "task": index + 1 if count > 1 else None, "script": script}

    def time_limits(self, config: ExperimentConfig) -> Optional[Tuple[int, int]]:
        """(h_rt, seconds of warning before it) in seconds, or None without a limit."""
        seconds = config.requires.time or (parse_duration(self.target.get("time")) if self.target.get("time") else None)
        if not seconds:
            return None
        warning = int(self.target.get("signal_warning") or DEFAULT_WARNING)
        return int(seconds), min(warning, max(1, int(seconds) // 2))

    def directives(self, config: ExperimentConfig, count: int, folder: str,
                   max_parallel: Optional[int] = None) -> List[str]:
        t, req = self.target, config.requires
        for path in (self.root, folder):
            if any(c.isspace() for c in path):
                raise BadInput(f"Grid Engine cannot take a path with spaces in a job script: {path!r}",
                               "keep the repository (and its runs) at a path without spaces")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"gitexp-{config.group or config.name}")[:100]
        lines = [f"-N {name}", "-S /bin/bash", f"-wd {self.root}", "-j y", "-V", "-notify", "-r n"]
        lines.append(f"-o {folder}/$JOB_ID.$TASK_ID.out" if count > 1 else f"-o {folder}/$JOB_ID.out")
        if t.get("queue"):
            lines.append(f"-q {_word('queue', t.get('queue'))}")
        if t.get("project"):
            lines.append(f"-P {_word('project', t.get('project'))}")
        cpus = int(req.cpus or t.get("cpus") or 1)
        if cpus > 1 or t.get("pe") and req.cpus:
            if not t.get("pe"):
                raise BadInput(f"{config.name} asks {cpus} CPUs but run target '{t.name}' names no parallel "
                               "environment", f"git exp remote add {t.name} --runner sge --pe <pe> ... (qconf -spl)")
            lines.append(f"-pe {_word('pe', t.get('pe'))} {cpus}")
        resources = self.resources(config, cpus)
        if resources:
            lines.append("-l " + ",".join(resources))
        if count > 1:
            lines.append(f"-t 1-{count}")
            parallel = max_parallel or t.get("max_parallel")
            if parallel:
                lines.append(f"-tc {int(parallel)}")
        for extra in t.list("qsub"):
            if "\n" in extra or "\r" in extra:
                raise BadInput(f"run target '{t.name}': a qsub line may not hold a line break: {extra!r}")
            lines.append(extra)
        return lines

    def resources(self, config: ExperimentConfig, cpus: int) -> List[str]:
        """The -l resources of a job: its time limits, memory per slot and GPUs."""
        t, req = self.target, config.requires
        limits = self.time_limits(config)
        resources = []
        if limits:
            hard, warning = limits
            resources += [f"h_rt={hard}", f"s_rt={hard - warning}"]
        ram = req.ram or (parse_size(t.get("mem")) if t.get("mem") else None)
        if ram:  # Grid Engine counts memory per slot
            per_slot = -(-ram // cpus)
            resources.append(f"{_word('ram_resource', t.get('ram_resource') or DEFAULT_RAM_RESOURCE)}="
                             f"{max(1, -(-per_slot // (1024 * 1024)))}M")
        if req.gpus:
            if not t.get("gpu_resource"):
                raise BadInput(f"{config.name} asks {req.gpus} GPU(s) but run target '{t.name}' names no GPU resource",
                               f"git exp remote add {t.name} --runner sge --gpu-resource <name> ... (qconf -sc)")
            resources.append(f"{_word('gpu_resource', t.get('gpu_resource'))}={int(req.gpus)}")
        return resources

    def job_script(self, config: ExperimentConfig, exps: Sequence[Experiment], folder: str,
                   max_parallel: Optional[int] = None) -> str:
        argv = gitexp_argv("_exec", python=self.target.python)
        lines = ["#!/bin/bash"]
        lines += [f"#$ {d}" for d in self.directives(config, len(exps), folder, max_parallel)]
        lines += ["# written by gitexp: runs the gitexp executor for each experiment of this job", "set -u"]
        lines += [f"module load {shlex.quote(m)}" for m in self.target.list("modules")]
        lines += self.target.list("setup")
        root = shlex.quote(self.root)
        limits = self.time_limits(config)
        hard, warning = limits or (0, 0)
        lines += [
            f"if [ ! -d {root} ]; then",
            f"  echo \"gitexp: \"{root}\" is not visible on $(hostname): the repository must be on a"
            " filesystem shared with the execution hosts\" >&2",
            "  exit 97",
            "fi",
            "shas=(" + " ".join(e.sha for e in exps) + ")",
            "task=${SGE_TASK_ID:-undefined}; case $task in ''|*[!0-9]*) task=1 ;; esac",
            "sha=${shas[$((task - 1))]}",
            "export GITEXP_KILL_GRACE=${GITEXP_KILL_GRACE:-3}",
            # The executor ignores -notify's SIGUSR2 (qdel is coming); this shell turns it into SIGTERM.
            "trap '' USR2",
            " ".join(shlex.quote(a) for a in argv) + " \"$sha\" --runner sge &",
            "pid=$!",
            "trap 'kill -TERM $pid 2>/dev/null' USR2 TERM",
        ]
        if limits:
            # s_rt's SIGUSR1 reaches the executor too (same process group); this shell only
            # sends SIGTERM before h_rt's SIGKILL. A SIGUSR1 long before s_rt (-notify before
            # a suspension) is not the time limit.
            lines += [
                f"soft={hard - warning}",
                f"term_in=$(( {warning - TERM_MARGIN} - ${{GITEXP_KILL_GRACE%.*}} ))",
                "[ \"$term_in\" -ge 1 ] 2>/dev/null || term_in=1",
                "warned() {",
                "  [ \"$SECONDS\" -ge $((soft - 5)) ] || return 0",
                "  (sleep \"$term_in\"; kill -TERM $pid 2>/dev/null) &",
                "}",
                "trap warned USR1",
            ]
        else:
            lines.append("trap '' USR1")
        lines += [
            "code=0",
            "while kill -0 $pid 2>/dev/null; do wait $pid; code=$?; done",
            "exit $code",
        ]
        return "\n".join(lines) + "\n"

    # -- state ----------------------------------------------------------------------------------
    def qstat_table(self) -> Dict[Tuple[str, Optional[int]], str]:
        """(job, task) -> Grid Engine's state letters (``qw``, ``hqw``, ``r``, ``Eqw``), for every
        job of the target's user, from one ``qstat -xml``."""
        code, out, err = self._call([self._tool("qstat"), "-xml", "-g", "d", "-u", self.transport.user()])
        if code != 0:
            raise GitExpError(f"qstat failed: {(err or out).strip()[:300]}")
        return parse_qstat(out)

    def states(self, exps: Sequence[Experiment]) -> Dict[str, State]:
        """Our status merged with Grid Engine's, for all of them from one ``qstat``; ``qacct``
        (once per job) for those that left the queue without an end recorded."""
        open_ = [e for e in exps if e.status in ACTIVE]
        out: Dict[str, State] = {e.sha: (e.status, None) for e in exps}
        if not open_:
            return out
        try:
            table = self.qstat_table()
        except GitExpError as exc:
            return {**out, **{e.sha: (e.status, f"cannot ask Grid Engine: {exc}") for e in open_}}
        gone: Dict[str, List[Experiment]] = {}
        for exp in open_:
            ref = job_of(exp.summary)
            state = table.get((ref.job, ref.task)) if ref else None
            if ref is not None and state is None:
                gone.setdefault(ref.job, []).append(exp)
            out[exp.sha] = sge_status(exp.status, state)
        for job, left in gone.items():
            accounting = self.qacct(job)
            for exp in left:
                ref = job_of(exp.summary)
                record = accounting.get(ref.task if ref else None) if ref else None
                if record is not None:
                    out[exp.sha] = ended_as(exp.summary, record)
        return out

    def qacct(self, job: str) -> Dict[Optional[int], Dict[str, str]]:
        """task (None for a plain job) -> qacct's fields of the job's last run; {} when Grid
        Engine has no accounting for it (yet: it is written a few seconds after the end)."""
        try:
            code, out, _ = self._call([self._tool("qacct"), "-j", job])
        except BadInput:
            return {}
        return parse_qacct(out) if code == 0 else {}

    # -- cancel ---------------------------------------------------------------------------------
    def stop_job_check(self, exp: Experiment) -> None:
        if job_of(exp.summary) is None:
            raise BadInput(f"{exp.name} has no usable Grid Engine job id recorded; nothing was cancelled",
                           f"see git notes --ref=exps show {exp.sha}")

    def stop_job(self, exp: Experiment) -> str:
        ref = job_of(exp.summary)
        if ref is None:
            raise BadInput("no usable Grid Engine job id was recorded: delete its job by hand")
        code, out, err = self._call([self._tool("qdel"), *ref.argv()])
        if code != 0:
            raise GitExpError(f"qdel {ref.spec} failed: {(err or out).strip()[:300]}")
        return f"qdel {ref.spec}"

    @classmethod
    def stop_reason(cls, summary: Dict[str, Any], saw_warning: bool, signalled: bool = True) -> Optional[str]:
        """On the node: a cancel (qdel), or the time limit (s_rt's SIGUSR1 came first)."""
        if summary.get("cancel_requested"):
            return Status.KILLED
        if saw_warning:
            return Status.TIMEOUT
        return Status.KILLED if signalled else None


def parse_qstat(text: str) -> Dict[Tuple[str, Optional[int]], str]:
    """``qstat -xml -g d`` as (job, task) -> state letters; a pending array's range of tasks
    (``1-6:1``) is expanded."""
    table: Dict[Tuple[str, Optional[int]], str] = {}
    try:
        root = ElementTree.fromstring(text or "<job_info/>")
    except ElementTree.ParseError as exc:
        raise GitExpError(f"qstat -xml printed what is not XML: {exc}") from None
    for item in root.iter("job_list"):
        job = (item.findtext("JB_job_number") or "").strip()
        state = (item.findtext("state") or "").strip()
        tasks = (item.findtext("tasks") or "").strip()
        if not job.isdigit():
            continue
        for task in _task_ids(tasks):
            table[(job, task)] = state
    return table


def _task_ids(text: str) -> List[Optional[int]]:
    if not text:
        return [None]
    ids: List[Optional[int]] = []
    for part in text.split(","):
        match = re.match(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", part.strip())
        if match:
            first, last, step = int(match.group(1)), int(match.group(2) or match.group(1)), int(match.group(3) or 1)
            ids.extend(range(first, min(last, first + 1_000_000) + 1, max(1, step)))
    return ids


def parse_qacct(text: str) -> Dict[Optional[int], Dict[str, str]]:
    """``qacct -j`` records by task (``taskid undefined``: None); the last record of a task wins."""
    records: Dict[Optional[int], Dict[str, str]] = {}
    for block in re.split(r"^=+\s*$", text, flags=re.M):
        fields: Dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key:
                fields[key] = value.strip()
        if "jobnumber" in fields:
            task = fields.get("taskid", "undefined")
            records[int(task) if task.isdigit() else None] = fields
    return records


def sge_status(recorded: str, state: Optional[str]) -> Tuple[str, Optional[str]]:
    """Our status merged with Grid Engine's state letters; the reason says what it said."""
    if recorded not in ACTIVE:
        return recorded, None
    if state is None:
        return Status.LOST, "the job left Grid Engine's queue without a result from gitexp"
    why = f"Grid Engine: {state}"
    if "E" in state:
        return Status.PENDING, why + " (error state: qstat -j <job> says why; qmod -cj <job> retries it)"
    if "d" in state:
        return recorded, why + " (being deleted)"
    if "r" in state or "t" in state:
        return (Status.RUNNING if recorded == Status.RUNNING else Status.STARTING), why
    if "s" in state.lower() or "T" in state:
        return recorded, why + " (suspended)"
    return Status.PENDING, why + (" (held)" if "h" in state else "")


def ended_as(summary: Dict[str, Any], record: Dict[str, str]) -> Tuple[str, str]:
    """What qacct says about a job whose executor recorded no end."""
    failed_text = record.get("failed", "0")
    exit_status = record.get("exit_status", "?")
    code = int(failed_text.split()[0]) if failed_text.split() and failed_text.split()[0].isdigit() else 0
    why = f"Grid Engine: exit_status {exit_status}" + (f", failed {failed_text}" if code else "")
    if summary.get("cancel_requested"):
        return Status.KILLED, why
    if code in FAILED_AS:
        return FAILED_AS[code], why
    if code or exit_status not in ("0", "?"):
        return Status.FAILED, why
    return Status.LOST, why + " (the job ended without a result from gitexp)"
