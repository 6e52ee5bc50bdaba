"""Transports: *where* a command runs (this machine, or another one over ssh), apart from *how*
it is scheduled (a runner).

Every transport has the same interface:

* ``run(argv, cwd=None, input=None, env=None, timeout=None)`` runs an argv list (never a shell
  string) and returns a ``CompletedProcess`` with bytes output; a non-zero exit is a result,
  not an exception. A command that cannot start gives 127 (no such program) or 126 (cannot
  execute it, or ``cwd`` unusable) with the reason on stderr, as a shell reports it.
* ``spawn(argv, cwd, log_path, env=None)`` starts argv detached (a new session, stdin from
  /dev/null, stdout and stderr appended to ``log_path``, relative to ``cwd``) and returns its
  pid on the target. Failing to start it raises OSError (FileNotFoundError: no cwd, no program).
* ``stream(argv, cwd=None)`` runs argv with its output going straight to this process's
  stdout and stderr (``git exp logs -f`` of a run there) and returns its exit code.
* ``signal(pid, sig, group=False)`` sends a signal there (``os.kill``/``os.killpg`` here,
  ``kill -s`` elsewhere); the caller names a pid it proved with local evidence.
* ``read_file``, ``write_file`` (atomic: a temporary file, then rename), ``exists``,
  ``disk_free`` (bytes available to this user), ``which``, ``home``, ``user``, ``close``.

``env`` adds variables to the target's own environment (a remote login's, or this process's);
it never replaces it. Paths (``cwd``, ``log_path``, file paths) are literal, except a leading
``~/`` (or ``~`` alone), which means the target user's home; argv items are never expanded.
Relative paths on an ssh target are relative to the remote home (where ssh sessions start).

``SshTransport`` (another machine over ssh) lives in :mod:`gitexp.ssh_transport`.

``run(..., timeout=T, max_output=N)`` bounds a round trip: past ``T`` seconds it raises
``NoAnswer``, past ``N`` bytes of stdout ``ReplyTooLarge`` (both ``TransportError``s; the
command is killed here and may go on there). ``ConnectionDropped`` says the connection broke
while a command ran (what it did there is unknown), apart from a host that cannot be reached.

``FakeTransport``, which runs nothing and answers from rules, lives with the tests
(``tests/fake_transport.py``).
"""
from __future__ import annotations

import errno
import getpass
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence, TypeVar

from .errors import GitExpError

T = TypeVar("T", bound="Transport")
Result = subprocess.CompletedProcess[bytes]  # subscriptable at run time from Python 3.9
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TransportError(GitExpError):
    """The target could not be reached (or the connection broke); carries ssh's own message."""


class ConnectionDropped(TransportError):
    """The connection broke while a command ran there: it may have done its work or not."""


class NoAnswer(TransportError):
    """A command did not end within its timeout (killed here; it may go on there)."""


class ReplyTooLarge(TransportError):
    """A command wrote more than its ``max_output`` bytes to stdout (killed here)."""


def capture(argv: Sequence[str], input: Optional[bytes], timeout: Optional[float],
            max_output: Optional[int], **popen: object) -> Result:
    """``subprocess.run(capture_output=True)`` with stdout bounded to ``max_output`` bytes.

    One thread and a selector rather than reader threads: an ssh client multiplexed over a
    master hands its pipes to the master, so killing the client does not close them, and a
    thread blocked reading one could not be stopped.
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]
    deadline = None if timeout is None else time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    try:
        with selectors.DefaultSelector() as selector:
            _pump(proc, selector, input, out, err, deadline, max_output)
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
    return subprocess.CompletedProcess(list(argv), proc.returncode, bytes(out), bytes(err))


def _pump(proc: "subprocess.Popen[bytes]", selector: selectors.BaseSelector, input: Optional[bytes],
          out: bytearray, err: bytearray, deadline: Optional[float], max_output: Optional[int]) -> None:
    pending = memoryview(input or b"")
    if proc.stdin is not None:
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
    assert proc.stdout is not None and proc.stderr is not None
    selector.register(proc.stdout, selectors.EVENT_READ, out)
    selector.register(proc.stderr, selectors.EVENT_READ, err)
    while selector.get_map():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise subprocess.TimeoutExpired(proc.args, 0)
        for key, _events in selector.select(left):
            if key.fileobj is proc.stdin:
                try:
                    pending = pending[os.write(key.fd, pending[:1 << 16]):]
                except BlockingIOError:
                    continue
                except BrokenPipeError:  # it stopped reading: its answer says why
                    pending = pending[:0]
                if not pending:
                    selector.unregister(proc.stdin)
                    proc.stdin.close()
                continue
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if key.data is out and max_output is not None and len(out) > max_output:
                raise ReplyTooLarge(f"more than {max_output} bytes of output")
            if key.data is err and len(err) > 1 << 20:
                del err[:-(1 << 16)]  # what matters of a flood on stderr is its end


def check_argv(argv: Sequence[str]) -> List[str]:
    words = [os.fspath(a) for a in argv]
    if not words:
        raise ValueError("empty argv")
    for word in words:
        if not isinstance(word, str):
            raise TypeError(f"argv items must be str, got {word!r}")
        if "\0" in word:
            raise ValueError(f"argv item holds a NUL byte: {word!r}")
    return words


def check_env(env: Optional[Mapping[str, str]]) -> Dict[str, str]:
    checked: Dict[str, str] = {}
    for name, value in (env or {}).items():
        if not ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        if "\0" in str(value):
            raise ValueError(f"environment value of {name} holds a NUL byte")
        checked[name] = str(value)
    return checked


def os_error(message: str, path: str) -> OSError:
    """An OSError of the kind the target's message names (messages come with LC_ALL=C)."""
    for needle, code in (("No such file", errno.ENOENT), ("Permission denied", errno.EACCES),
                         ("Is a directory", errno.EISDIR), ("Not a directory", errno.ENOTDIR),
                         ("No space left", errno.ENOSPC), ("Disk quota", errno.EDQUOT)):
        if needle in message:
            return OSError(code, message.strip() or os.strerror(code), path)
    return OSError(errno.EIO, message.strip() or "failed", path)


def signal_name(sig: int) -> str:
    """``TERM`` for SIGTERM: the name every POSIX ``kill -s`` takes."""
    return signal.Signals(sig).name[3:]


def last_line(data: bytes) -> str:
    """The last non-empty line: a login script may print before our command does."""
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class Transport:
    """The interface every transport implements (see the module docstring)."""

    name = "transport"

    def run(self, argv: Sequence[str], cwd: Optional[str] = None, input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
            max_output: Optional[int] = None) -> Result:
        raise NotImplementedError

    def spawn(self, argv: Sequence[str], cwd: str, log_path: str,
              env: Optional[Mapping[str, str]] = None) -> int:
        raise NotImplementedError

    def stream(self, argv: Sequence[str], cwd: Optional[str] = None) -> int:
        """Run argv with its output streamed to this process's stdout and stderr as it comes
        (``git exp logs -f`` of a run there); its exit code."""
        raise NotImplementedError

    def signal(self, pid: int, sig: int, group: bool = False) -> None:
        """Send ``sig`` to process ``pid`` on the target (its process group with ``group``).
        ProcessLookupError when there is no such process, PermissionError when it is not ours.
        Callers name a pid they proved with local evidence (:mod:`gitexp.evidence`)."""
        target = f"-{int(pid)}" if group else str(int(pid))
        proc = self.run(["kill", "-s", signal_name(sig), "--", target])
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip()
            if "ermission" in message or "not permitted" in message:  # kill: (pid) - Operation not permitted
                raise PermissionError(errno.EPERM, message or "not permitted")
            raise ProcessLookupError(errno.ESRCH, message or f"no process {target}")

    def read_file(self, path: str) -> bytes:
        raise NotImplementedError

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def disk_free(self, path: str) -> int:
        raise NotImplementedError

    def which(self, name: str) -> Optional[str]:
        raise NotImplementedError

    def home(self) -> str:
        raise NotImplementedError

    def user(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the transport stays usable (it reconnects on demand)."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- this machine ------------------------------------------------------------------------------

class LocalTransport(Transport):
    """Commands and files on this machine."""

    name = "local"

    def _path(self, path: str) -> str:
        return os.path.expanduser(path) if path == "~" or path.startswith("~/") else path

    def _environ(self, env: Optional[Mapping[str, str]]) -> Optional[Dict[str, str]]:
        extra = check_env(env)
        return {**os.environ, **extra} if extra else None

    def run(self, argv: Sequence[str], cwd: Optional[str] = None, input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
            max_output: Optional[int] = None) -> Result:
        words = check_argv(argv)
        where = self._path(cwd) if cwd is not None else None
        try:
            if max_output is not None:
                try:
                    return capture(words, input, timeout, max_output, cwd=where, env=self._environ(env))
                except subprocess.TimeoutExpired:
                    raise NoAnswer(f"{words[0]} did not end within {timeout:g}s") from None
            # stdin is /dev/null unless given: a command must never read gitexp's terminal.
            return subprocess.run(words, check=False, cwd=where, input=input, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL if input is None else None,
                                  env=self._environ(env))
        except OSError as exc:
            return self._not_started(words, where, exc)

    @staticmethod
    def _not_started(words: List[str], cwd: Optional[str], exc: OSError) -> Result:
        """What a shell reports for a command it cannot start (the same as over ssh)."""
        if cwd is not None and not os.path.isdir(cwd):
            return subprocess.CompletedProcess(words, 126, b"", f"cd: {cwd}: {exc.strerror}\n".encode())
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        return subprocess.CompletedProcess(words, code, b"", f"{words[0]}: {exc.strerror}\n".encode())

    def spawn(self, argv: Sequence[str], cwd: str, log_path: str,
              env: Optional[Mapping[str, str]] = None) -> int:
        words = check_argv(argv)
        where = self._path(cwd)
        # A relative log path is relative to cwd, as on an ssh target (where the shell cd's first).
        with open(os.path.join(where, self._path(log_path)), "ab") as log:
            proc = subprocess.Popen(words, cwd=where, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=self._environ(env))
        return proc.pid

    def stream(self, argv: Sequence[str], cwd: Optional[str] = None) -> int:
        words = check_argv(argv)
        return subprocess.run(words, cwd=self._path(cwd) if cwd else None, stdin=subprocess.DEVNULL,
                              check=False).returncode

    def signal(self, pid: int, sig: int, group: bool = False) -> None:
        (os.killpg if group else os.kill)(pid, sig)

    def read_file(self, path: str) -> bytes:
        with open(self._path(path), "rb") as handle:
            return handle.read()

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        target = self._path(path)
        folder, base = os.path.split(target)
        fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{base}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise

    def exists(self, path: str) -> bool:
        return os.path.exists(self._path(path))

    def disk_free(self, path: str) -> int:
        st = os.statvfs(self._path(path))
        return st.f_bavail * st.f_frsize

    def which(self, name: str) -> Optional[str]:
        return shutil.which(name)

    def home(self) -> str:
        return os.path.expanduser("~")

    def user(self) -> str:
        return getpass.getuser()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
