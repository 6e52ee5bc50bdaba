"""Run targets on another host, over ssh: the far side is a git repository with gitexp installed.

No server of ours and no shared filesystem. What travels how:

* experiment commits: ``git push`` over ssh (the transport's shared master connection), as
  the parents of one throwaway commit pushed to ``refs/exps-inbox/<id>`` (one explicit refspec
  however many experiments);
* recording and starting them: the far side's own gitexp (``python -m gitexp _agent submit``,
  see :mod:`gitexp.runners.agent`) records them there and starts them with the target's runner
  there (a detached worker for ``local``, ``sbatch`` for ``slurm``), so a dropped connection
  never stops a run;
* results: the far side's executor writes notes there as the run goes; ``git exp pull
  <target>`` fetches and merges them (:mod:`gitexp.sync`) over the same connection;
* states, queue, cancel: one ``_agent`` round trip each; output: ``git exp logs -f`` there.

Submission is all or nothing, as for Slurm: the far side records and starts the experiments
only after every check passed; if it refuses, nothing is recorded here; if recording here
fails, the far side is asked to stop and remove them again (``_agent drop``). If its reply is
lost (the connection dropped, no answer within ``ssh_timeout``), the outcome is settled by the
next ``pull``, ``queue --on`` or ``run --on`` (:mod:`gitexp.runners.outbox`). Every reply is
checked (:mod:`gitexp.runners.reply`): bounded in size and depth, of the expected shape, or
refused.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .. import __version__
from ..lifecycle import FINAL, Status, record, transition
from ..errors import BadInput, GitExpError, NotReady
from ..notes import INBOX_PREFIX, Experiment
from ..repo import RefUpdate
from ..summary import printable
from ..ssh_transport import SshTransport
from ..transport import ConnectionDropped, NoAnswer, ReplyTooLarge, TransportError
from ..units import format_duration, parse_duration
from ..values import short
from . import outbox
from .base import Made, Runner, State, Stopped
from .registry import runner_class
from .reply import MAX_REPLY, PROTOCOL, parse_reply, submitted_problem

SUMMARY_SCHEMA = 1  # the schema of the summaries this gitexp writes (experiments.initial_summary)
# What `run --on` and the pre-push hook ask before they push, in one round trip and without
# starting Python there: is the path a repository, are git and the interpreter there, and the
# free disk at its run root. Values arrive as positional parameters ($1 path, $2 python),
# never spliced into the text.
CHECK_SCRIPT = r"""
case "$1" in "~") d=$HOME ;; "~/"*) d="$HOME/${1#"~/"}" ;; *) d=$1 ;; esac
cd -- "$d" 2>/dev/null || { echo "gitexp-check nodir"; exit 0; }
command -v git >/dev/null 2>&1 || { echo "gitexp-check nogit"; exit 0; }
command -v "$2" >/dev/null 2>&1 || { echo "gitexp-check nopython"; exit 0; }
[ "$(git rev-parse --is-bare-repository 2>/dev/null)" = false ] || { echo "gitexp-check norepo"; exit 0; }
common=$(git rev-parse --git-common-dir) && common=$(cd -- "$common" && pwd) || { echo "gitexp-check norepo"; exit 0; }
runs=${GITEXP_RUNS_DIR:-$(git config exp.runsDir 2>/dev/null)}
case "$runs" in "") runs="$common/gitexp/runs" ;; "~") runs=$HOME ;; "~/"*) runs="$HOME/${runs#"~/"}" ;; esac
while [ ! -e "$runs" ]; do runs=$(dirname -- "$runs"); done
echo "gitexp-check ok $runs"
LC_ALL=C df -Pk -- "$runs" | tail -n 1
"""
DEFAULT_TIMEOUT = 300  # seconds a round trip to the host may take (the target's ssh_timeout)


class Unsettled(GitExpError):
    """A round trip ended without the far side's reply: what it did there is not known here."""


class SshRunner(Runner):
    """The runner of a target on another host: its own runner runs there, driven over ssh."""

    name = "ssh"
    INITIAL_STATUS = Status.PENDING

    @classmethod
    def asks_another_host(cls) -> bool:
        return True

    def __init__(self, repo: Any, store: Any, target: Any, transport: Any = None) -> None:
        super().__init__(repo, store, target, transport)
        self.far_runner = runner_class(self.target.runner)
        self.python = self.target.python or "python3"
        self.path = self.target.path or "."
        self.host = self.target.host or "?"
        setting = self.target.get("ssh_timeout")
        self.timeout = parse_duration(setting) if setting else DEFAULT_TIMEOUT

    def batch_key(self) -> Tuple[str, ...]:
        return ("ssh", self.host, self.path, str(self.target.get("port")), str(self.target.get("ssh_config")))

    def describe_target(self) -> str:
        return f"{self.target.name} ({self.host}:{self.path})"

    # -- the far side's gitexp ------------------------------------------------------------------
    def agent(self, op: str, request: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None,
              need: Sequence[str] = (), in_repo: bool = True) -> Dict[str, Any]:
        """One ``_agent`` round trip: a JSON request on stdin, a JSON answer on stdout, checked.

        Raises BadInput for a refusal or a reply that is not gitexp's, Unsettled when the round
        trip ended without a reply (the connection broke, no answer within ``ssh_timeout``).
        """
        body = json.dumps({**(request or {}), "protocol": PROTOCOL, "client_version": __version__}).encode()
        limit = timeout or self.timeout
        name, host = self.target.name, self.host
        try:
            proc = self.transport.run([self.python, "-m", "gitexp", "_agent", op], cwd=self.path if in_repo else None,
                                      input=body, timeout=limit, max_output=MAX_REPLY)
        except ReplyTooLarge:
            raise self._bad_reply(op, f"more than {MAX_REPLY >> 20} MiB") from None
        except NoAnswer:
            raise Unsettled(f"run target {name}: gitexp on {host} did not answer {op} within "
                            f"{format_duration(limit)}",
                            f"a slow host: raise it with git config exp.remote.{name}.ssh-timeout 15m") from None
        except ConnectionDropped as exc:
            raise Unsettled(f"run target {name}: {exc.message} before gitexp there answered {op}") from None
        except TransportError as exc:
            raise BadInput(str(exc)) from None
        if proc.returncode < 0:
            raise Unsettled(f"run target {name}: the ssh connection to {host} ended (signal {-proc.returncode}) "
                            f"before gitexp there answered {op}")
        if proc.returncode != 0:
            raise self._failure(proc.returncode, proc.stderr.decode(errors="replace"))
        answer, problem = parse_reply(op, proc.stdout, need)
        if problem:
            raise self._bad_reply(op, problem)
        return answer

    def _bad_reply(self, op: str, problem: str) -> BadInput:
        return BadInput(f"run target {self.target.name}: {self.python} on {self.host} did not answer {op} as gitexp "
                        f"does ({printable(problem)}); refused",
                        f"point --python at the Python that has gitexp {__version__} there")

    def _failure(self, code: int, stderr: str) -> GitExpError:
        name, host = self.target.name, self.host
        text = " ".join(stderr.split())
        setup = f"git exp remote setup {name}"
        if code == 126 and "cd:" in stderr:
            return BadInput(f"run target {name}: {self.path} on {host} is not a gitexp repository "
                            f"({printable(text[-200:])})", f"create it with: {setup}")
        if code == 127:
            return BadInput(f"run target {name}: {self.python} not found on {host}",
                            f"install Python 3 there, or set the interpreter that has gitexp: "
                            f"git exp remote add {name} ... --python /path/to/python")
        if "No module named gitexp" in stderr:
            return BadInput(f"run target {name}: gitexp is not installed for {self.python} on {host}",
                            f"install it there with: git exp remote setup {name} --install (or point --python at a "
                           "Python that has it)")
        if "No such command '_agent'" in stderr:
            return BadInput(f"run target {name}: the gitexp on {host} is too old to run experiments sent over ssh",
                            f"install this one there: git exp remote setup {name} --install")
        errors = [line[len("error: "):] for line in stderr.splitlines() if line.startswith("error: ")]
        message = f"run target {name} ({host}): {printable(errors[-1] if errors else text[-300:] or f'exit {code}')}"
        if code == BadInput.exit_code:
            return BadInput(message)
        if code == NotReady.exit_code:
            return NotReady(message)
        return GitExpError(message)

    def preflight(self, in_repo: bool = True) -> Dict[str, Any]:
        """The far side answers, its gitexp reads our notes, and (``in_repo``) the path is a
        git repository."""
        info = self.agent("probe", in_repo=in_repo)
        name, host = self.target.name, self.host
        if not info.get("git"):
            raise BadInput(f"run target {name}: git is not installed on {host}", "install git there")
        if info.get("protocol") != PROTOCOL or SUMMARY_SCHEMA not in (info.get("schemas") or []):
            raise BadInput(f"run target {name}: gitexp {printable(str(info.get('version')))} on {host} cannot read "
                           f"the notes of gitexp {__version__} (agent protocol {info.get('protocol')!r}, "
                           f"notes schemas {info.get('schemas')!r}; this one writes schema {SUMMARY_SCHEMA})",
                           f"install this one there: git exp remote setup {name} --install")
        if in_repo and not info.get("repo"):
            raise BadInput(f"run target {name}: {self.path} on {host} is not a gitexp repository",
                           f"create it with: git exp remote setup {name}")
        return info

    def check_there(self) -> Tuple[int, str]:
        """(free bytes at the run root there, that path): one round trip, no Python there.

        Raises BadInput for what makes the target unusable (no repository, no git, no Python).
        """
        name, host = self.target.name, self.host
        try:
            proc = self.transport.run(["sh", "-c", CHECK_SCRIPT, "sh", self.path, self.python],
                                      timeout=self.timeout, max_output=1 << 16)
        except (NoAnswer, ReplyTooLarge) as exc:
            raise BadInput(f"run target {name}: the check there failed: {exc.message}") from None
        except TransportError as exc:
            raise BadInput(str(exc)) from None
        lines = proc.stdout.decode(errors="replace").splitlines()
        said = [line.split(" ", 2)[1:] for line in lines if line.startswith("gitexp-check ")]
        state = said[-1][0] if said else f"exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
        setup = f"create it with: git exp remote setup {name}"
        if state in ("nodir", "norepo"):
            raise BadInput(f"run target {name}: {self.path} on {host} is not a gitexp repository", setup)
        if state == "nogit":
            raise BadInput(f"run target {name}: git is not installed on {host}", "install git there")
        if state == "nopython":
            raise BadInput(f"run target {name}: {self.python} not found on {host}",
                           f"install Python 3 there, or set the interpreter that has gitexp: "
                           f"git exp remote add {name} ... --python /path/to/python")
        found = re.search(r"(\d+)\s+(\d+)\s+(\d+)\s+\d+%", lines[-1] if lines else "")
        if state != "ok" or not found:
            raise GitExpError(f"run target {name}: cannot read the free disk on {host}: {printable(state[:300])}")
        return int(found.group(3)) * 1024, said[-1][1] if len(said[-1]) > 1 else self.path

    # -- git over the same connection -------------------------------------------------------------
    def git_url(self) -> str:
        assert isinstance(self.transport, SshTransport)
        return self.transport.git_url(self.path)

    @contextmanager
    def git_env(self) -> Iterator[None]:
        """GIT_SSH_COMMAND for git's own ssh, so it rides the transport's master connection."""
        assert isinstance(self.transport, SshTransport)
        old = os.environ.get("GIT_SSH_COMMAND")
        os.environ["GIT_SSH_COMMAND"] = self.transport.git_ssh_command()
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("GIT_SSH_COMMAND", None)
            else:
                os.environ["GIT_SSH_COMMAND"] = old

    def push_commits(self, shas: Sequence[str], ref: Optional[str] = None) -> str:
        """Push the commits (and what they need) as the parents of one inbox commit; its ref."""
        tip = self.repo.commit_tree(self.repo.build_tree(None, {}), list(shas),
                                    f"gitexp: {len(shas)} experiment(s) for run target {self.target.name}\n")
        self.repo.flush_objects()
        ref = ref or INBOX_PREFIX + uuid.uuid4().hex
        self._git_push([f"{tip}:{ref}"], what="push the experiment commits")
        return ref

    def _delete_ref(self, ref: str) -> None:
        try:
            self._git_push([f":{ref}"], what="delete " + ref)
        except GitExpError:
            pass

    def _git_push(self, refspecs: List[str], what: str, lease: Optional[Tuple[str, str]] = None) -> None:
        # --no-verify: the pre-push disk check (gitexp hooks) was made by the caller already.
        argv = ["push", "--quiet", "--no-verify", "--no-recurse-submodules",
                *([f"--force-with-lease={lease[0]}:{lease[1]}"] if lease else []), "--", self.git_url(), *refspecs]
        with self.git_env():
            try:
                proc = self.repo.run(argv, check=False, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise BadInput(f"run target {self.target.name}: could not {what} to {self.host}:{self.path}: "
                               f"no answer within {format_duration(self.timeout)}") from None
        if proc.returncode != 0:
            lines = [line.strip() for line in proc.stderr.decode(errors="replace").splitlines()
                     if line.strip() and not line.startswith(("hint:", "warning:"))]
            message = printable(" ".join(lines)[-300:]) or f"git push exited {proc.returncode}"
            raise BadInput(f"run target {self.target.name}: could not {what} to {self.host}:{self.path}: {message}")

    def fetch_source(self) -> Any:
        """What :mod:`gitexp.sync` fetches from: the target's repository, over our connection."""
        from ..sync import Source

        return Source(self.target.name, self.git_url(), f"target-{self.target.name}")

    # -- the runner interface -----------------------------------------------------------------------
    def submit(self, made: Made) -> List[Experiment]:
        from ..hooks.disk import check_fit

        self.warnings += outbox.settle(self)
        free, where = self.check_there()
        problems = check_fit(self.repo, self.target, made.configs, free, where)
        if problems:
            raise NotReady(f"not sent to run target {self.target.name}: " + "; ".join(problems),
                           "free disk space, or lower requires.disk / the target's disk_margin")
        exps = made.exps
        for exp in exps:
            exp.summary.update(status=Status.PENDING.value, runner=self.target.runner, target=self.target.name)
            exp.summary.pop("creator", None)
        inbox = INBOX_PREFIX + uuid.uuid4().hex
        # Written before anything is sent: a reply lost on the way is settled later from it.
        sent = outbox.open_submission(self.repo, self.target.name, inbox, exps, made.detail_notes(), self.timeout)
        try:
            self.push_commits([e.sha for e in exps], inbox)
        except BaseException:
            outbox.close_submission(self.repo, sent)
            raise
        answer = self._submit_there(made, inbox, sent)
        self._take_reply(exps, answer)
        try:
            record(self.store, exps, extra_notes=made.detail_notes(),
                   extra_refs_for=lambda e: [RefUpdate(sent.ref, None, sent.tip)] if e is exps[0] else [])
        except BaseException:
            try:
                self.agent("drop", {"shas": [e.sha for e in exps]})
            except GitExpError:
                pass
            outbox.close_submission(self.repo, sent)
            raise
        self.warnings += [f"{self.target.name}: {w}" for w in answer.get("warnings") or []]
        return exps

    def _submit_there(self, made: Made, inbox: str, sent: "outbox.Submission") -> Dict[str, Any]:
        """The ``submit`` round trip; a refusal takes the inbox back, a lost reply keeps the record."""
        exps = made.exps
        request = {"inbox": inbox, "runner": self.target.runner, "max_parallel": made.max_parallel,
                   "schema": SUMMARY_SCHEMA, "deadline": self.timeout,
                   "options": {k: v for k, v in self.target.options.items() if k in self.far_runner.OPTIONS},
                   "exps": [{"sha": e.sha, "name": e.name, "summary": e.summary,
                             **({"previous": e.previous} if e.previous else {})} for e in exps],
                   "details": {e.sha: {**made.details, **made.per_exp.get(e.sha, {})} for e in exps}}
        try:
            answer = self.agent("submit", request)
            problem = submitted_problem(answer, {e.sha for e in exps})
            if problem:
                raise self._bad_reply("submit", problem)
        except Unsettled as exc:
            names = ", ".join(e.name for e in exps[:3]) + (" ..." if len(exps) > 3 else "")
            raise Unsettled(f"{exc.message}: {len(exps)} experiment(s) ({names}) may have been recorded and "
                            f"started there; do not run them again",
                            f"git exp pull {self.target.name} (or queue --on, run --on) records them here if "
                            f"they were, and says so if they were not") from None
        except GitExpError:
            self._delete_ref(inbox)  # the far side took it, unless it never started
            outbox.close_submission(self.repo, sent)
            raise
        return answer

    def _take_reply(self, exps: Sequence[Experiment], answer: Dict[str, Any]) -> None:
        there = {item["sha"]: item for item in answer["exps"]}
        for exp in exps:
            item = there[exp.sha]
            if item["name"] != exp.name:
                exp.summary["name_there"] = item["name"]
            handle = self.far_runner.HANDLE  # the far scheduler's job handle
            if handle and isinstance(item.get("handle"), dict):
                exp.summary[handle] = item["handle"]
            elif isinstance(item.get("slurm"), dict):  # an older far side
                exp.summary["slurm"] = item["slurm"]
            if item["status"] in FINAL:
                exp.summary.update(status=item["status"], reason=item.get("reason"), ended=time.time())

    def submitted(self, exps: Sequence[Experiment]) -> str:
        how = "queued there for its worker" if self.far_runner.name == "local" else \
            f"submitted to {getattr(self.far_runner, 'SCHEDULER', self.far_runner.name)} there"
        failed = [e for e in exps if e.summary.get("status") == Status.FAILED]
        note = f" ({len(failed)} failed its preflight there: git exp show {failed[0].name})" if failed else ""
        return (f"sent {len(exps)} experiment(s) to {self.describe_target()}, {how}{note}; "
                f"see git exp queue --on {self.target.name}; results: git exp pull {self.target.name}")

    def queue_report(self, show_all: bool) -> Dict[str, Any]:
        """The far side's queue, states and free resources: one round trip (and one more to
        settle submissions whose reply was lost, if there are any)."""
        tell(outbox.settle(self))
        return self.agent("queue", {"all": show_all}, need=("queued", "running", "done"))

    def states(self, exps: Sequence[Experiment]) -> Dict[str, State]:
        try:
            answer = self.agent("queue", {"shas": [e.sha for e in exps]}, need=("states",))
        except GitExpError as exc:
            return {e.sha: (e.status, f"cannot ask {self.target.name}: {exc}") for e in exps}
        states = answer.get("states") or {}
        out: Dict[str, State] = {}
        for exp in exps:
            state = states.get(exp.sha)
            if isinstance(state, list) and len(state) == 2 and isinstance(state[0], str):
                why = f"on {self.target.name}" + (f": {state[1]}" if state[1] else "")
                out[exp.sha] = (state[0], why)
            else:
                out[exp.sha] = (exp.status, f"not recorded on {self.target.name}")
        return out

    def cancel(self, exp: Experiment) -> str:
        result = self._cancel_there(exp)
        if result.get("error"):
            raise BadInput(f"run target {self.target.name}: {printable(str(result['error']))}")
        far: Dict[str, Any] = result["summary"] if isinstance(result.get("summary"), dict) else {}
        if far.get("status") in FINAL:
            keep: Dict[str, Any] = {k: far.get(k) for k in ("ended", "reason", "exit_code") if k in far}
            transition(self.store, exp.sha, Status(far["status"]), keep, message=f"gitexp: cancelled on {self.target.name}")
        return f"{printable(str(result.get('line')))} on {self.target.name}"

    def stop_removed(self, exp: Experiment) -> Stopped:
        try:
            result = self._cancel_there(exp)
        except GitExpError as exc:
            return Stopped(f"could not stop it on {self.target.name}: {exc}")
        if result.get("error"):
            return Stopped(f"on {self.target.name}: {printable(str(result['error']))}")
        return Stopped(f"{printable(str(result.get('line')))} on {self.target.name}")

    def _cancel_there(self, exp: Experiment) -> Dict[str, Any]:
        results = self.agent("cancel", {"shas": [exp.sha]}).get("results") or [{}]
        return results[0] if isinstance(results[0], dict) else {}

    def follow_log(self, exp: Experiment, follow: bool) -> Optional[int]:
        """``git exp logs [-f]`` there, its output streamed here as it comes."""
        argv = [self.python, "-m", "gitexp", "logs", *(["-f"] if follow else []), exp.sha]
        try:
            return self.transport.stream(argv, self.path)
        except ConnectionDropped:
            raise GitExpError(f"the connection to {self.host} dropped; the run goes on there",
                              f"follow it again with: git exp logs -f {short(exp.sha)}") from None
        except TransportError as exc:
            raise BadInput(str(exc)) from None


def tell(lines: Sequence[str]) -> None:
    """Notices of a command that prints a report of its own (pull, queue --on), on stderr."""
    for line in lines:
        print(printable(f"gitexp: {line}"), file=sys.stderr, flush=True)


def pull_with_targets(repo: Any, specs: Sequence[str]) -> Any:
    """``git exp pull``: run targets on other hosts by name (their repository over the target's
    ssh connection), everything else as :func:`gitexp.sync.pull` takes it; one merge for all."""
    from .. import sync
    from ..notes import Store
    from ..targets import load_targets

    names = list(dict.fromkeys(specs))
    targets = load_targets(repo) if names else {}
    if not any(name in targets and targets[name].host for name in names):
        return sync.pull(repo, names)
    remotes = sync.git_remotes(repo)
    fetched = []
    for name in names:  # every name is checked before anything is fetched
        if not (name in targets and targets[name].host):
            sync.resolve(repo, name, remotes)
    store = Store(repo)
    for name in names:
        target = targets.get(name)
        if target is not None and target.host:
            runner = SshRunner(repo, store, target)
            try:
                tell(outbox.settle(runner))  # before the merge: recorded here with their target
                with runner.git_env():
                    fetched.append(sync.fetch(repo, runner.fetch_source()))
            except TransportError as exc:
                raise BadInput(str(exc)) from None
        else:
            fetched.append(sync.fetch(repo, sync.resolve(repo, name, remotes)))
    return sync.merge_fetched(repo, fetched, f"gitexp: pull {' '.join(names)}")


def push_to_target(repo: Any, store: Any, spec: str) -> Any:
    """``git exp push``: a run target on another host by name (its repository over the target's
    ssh connection), anything else as :func:`gitexp.sync.push` takes it."""
    from .. import sync
    from ..targets import load_targets

    target = load_targets(repo).get(spec)
    if target is None or not target.host or spec in sync.git_remotes(repo):
        return sync.push(repo, spec)
    runner = SshRunner(repo, store, target)
    try:
        with runner.git_env():
            return sync.push(repo, runner.git_url())
    except TransportError as exc:
        raise BadInput(str(exc)) from None
