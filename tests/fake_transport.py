"""FakeTransport: a :class:`~gitexp.transport.Transport` for unit tests of runner logic.

It runs nothing. Every ``run`` and ``spawn`` is recorded as a :class:`FakeCall` (argv, cwd,
input, env, log path) and answered from rules given with ``on()``; files live in a dict.
Invariants: it checks argv and env exactly as the real transports do (the same
``_check_argv``/``_check_env``), resolves paths as an ssh target would (relative to its home,
``~/`` is the home), and with ``unreachable`` set raises :class:`TransportError` like ssh.

It lives with the tests (``from fake_transport import FakeTransport``): gitexp itself never
imports a test double.
"""
from __future__ import annotations

import errno
import posixpath
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from gitexp.transport import ReplyTooLarge, Result, Transport, TransportError, check_argv, check_env


@dataclass
class FakeCall:
    kind: str  # "run" or "spawn"
    argv: List[str]
    cwd: Optional[str] = None
    input: Optional[bytes] = None
    env: Dict[str, str] = field(default_factory=dict)
    log_path: Optional[str] = None


Matcher = Union[Sequence[str], Callable[[List[str]], bool]]
Responder = Callable[[FakeCall], Result]


class FakeTransport(Transport):
    """Records every call and answers from rules; files live in a dict (``files``).

    ``on(["sbatch", "--parsable"], stdout="42\\n")`` answers commands whose argv starts with
    those words (first matching rule wins; ``times`` limits how often a rule answers).
    ``unreachable = "Connection refused"`` makes every call raise TransportError, as ssh does.
    Unmatched commands exit 0 with no output, or raise AssertionError with ``strict=True``.
    """

    def __init__(self, name: str = "fake", strict: bool = False, home: str = "/home/fake",
                 user: str = "fake", programs: Optional[Mapping[str, str]] = None,
                 free: int = 10 ** 12) -> None:
        self.name = name
        self.strict = strict
        self.calls: List[FakeCall] = []
        self.files: Dict[str, bytes] = {}
        self.modes: Dict[str, int] = {}
        self.programs: Dict[str, str] = dict(programs or {})
        self.free = free
        self.unreachable: Optional[str] = None
        self._home, self._user = home, user
        self._rules: List[Tuple[Matcher, Responder, List[Optional[int]]]] = []
        self._next_pid = 40000

    def on(self, match: Matcher, stdout: Union[bytes, str] = b"", stderr: Union[bytes, str] = b"",
           returncode: int = 0, respond: Optional[Responder] = None, times: Optional[int] = None) -> None:
        out = stdout.encode() if isinstance(stdout, str) else stdout
        err = stderr.encode() if isinstance(stderr, str) else stderr
        responder = respond or (lambda call: subprocess.CompletedProcess(call.argv, returncode, out, err))
        self._rules.append((match, responder, [times]))

    def commands(self) -> List[List[str]]:
        """The argv of every ``run``, in order."""
        return [call.argv for call in self.calls if call.kind == "run"]

    def _reach(self) -> None:
        if self.unreachable is not None:
            raise TransportError(f"cannot reach {self.name}: {self.unreachable}")

    def _path(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = self._home + path[1:]
        return posixpath.normpath(posixpath.join(self._home, path))

    def _answer(self, call: FakeCall) -> Result:
        for match, responder, left in self._rules:
            hit = match(call.argv) if callable(match) else call.argv[:len(match)] == list(match)
            if hit and left[0] != 0:
                if left[0] is not None:
                    left[0] -= 1
                return responder(call)
        if self.strict:
            raise AssertionError(f"FakeTransport: no rule for {call.argv}")
        return subprocess.CompletedProcess(call.argv, 0, b"", b"")

    def run(self, argv: Sequence[str], cwd: Optional[str] = None, input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
            max_output: Optional[int] = None) -> Result:
        self._reach()
        call = FakeCall("run", check_argv(argv), cwd, input, check_env(env))
        self.calls.append(call)
        result = self._answer(call)
        if max_output is not None and len(result.stdout or b"") > max_output:
            raise ReplyTooLarge(f"{self.name}: more than {max_output} bytes of output")
        return result

    def spawn(self, argv: Sequence[str], cwd: str, log_path: str,
              env: Optional[Mapping[str, str]] = None) -> int:
        self._reach()
        self.calls.append(FakeCall("spawn", check_argv(argv), cwd, None, check_env(env), log_path))
        self._next_pid += 1
        return self._next_pid

    def read_file(self, path: str) -> bytes:
        self._reach()
        try:
            return self.files[self._path(path)]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._reach()
        self.files[self._path(path)] = bytes(data)
        self.modes[self._path(path)] = mode

    def exists(self, path: str) -> bool:
        self._reach()
        target = self._path(path)
        return target in self.files or any(name.startswith(target.rstrip("/") + "/") for name in self.files)

    def disk_free(self, path: str) -> int:
        self._reach()
        return self.free

    def which(self, name: str) -> Optional[str]:
        self._reach()
        return self.programs.get(name)

    def home(self) -> str:
        return self._home

    def user(self) -> str:
        return self._user
