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
* ``read_file``, ``write_file`` (atomic: a temporary file, then rename), ``exists``,
  ``disk_free`` (bytes available to this user), ``which``, ``home``, ``user``, ``close``.

``env`` adds variables to the target's own environment (a remote login's, or this process's);
it never replaces it. Paths (``cwd``, ``log_path``, file paths) are literal, except a leading
``~/`` (or ``~`` alone), which means the target user's home; argv items are never expanded.
Relative paths on an ssh target are relative to the remote home (where ssh sessions start).

``SshTransport`` quotes every word for the remote POSIX shell (``shlex.quote``), so no value
runs anything of its own there; the remote login shell must be POSIX-like (sh, bash, dash, zsh,
ksh). All its commands share one master connection per host (``ControlMaster``) kept in a
private directory, so only the first pays for the handshake; ``git_ssh_command()`` and
``git_url()`` let git push and fetch over the same connection. ssh's own failures (refused,
timed out, host key, authentication, a dropped connection) raise ``TransportError`` with
ssh's message, while a command's own exit 255 stays a result.

``run(..., timeout=T, max_output=N)`` bounds a round trip: past ``T`` seconds it raises
``NoAnswer``, past ``N`` bytes of stdout ``ReplyTooLarge`` (both ``TransportError``s; the
command is killed here and may go on there). ``ConnectionDropped`` says the connection broke
while a command ran (what it did there is unknown), apart from a host that cannot be reached.

``FakeTransport``, which runs nothing and answers from rules, lives with the tests
(``tests/fake_transport.py``).
"""
from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import os
import re
import selectors
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, TypeVar

from .errors import GitExpError

T = TypeVar("T", bound="Transport")
Result = subprocess.CompletedProcess[bytes]  # subscriptable at run time from Python 3.9
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# sun_path holds 104 bytes on macOS (108 on Linux); the socket is "<dir>/<key>" and, while ssh
# creates it, "<dir>/<key>.<16 random chars>".
SOCKET_PATH_MAX = 104
CONTROL_KEY_LEN = 20
CONTROL_NAME_LEN = 1 + CONTROL_KEY_LEN + 17


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


def _check_argv(argv: Sequence[str]) -> List[str]:
    words = [os.fspath(a) for a in argv]
    if not words:
        raise ValueError("empty argv")
    for word in words:
        if not isinstance(word, str):
            raise TypeError(f"argv items must be str, got {word!r}")
        if "\0" in word:
            raise ValueError(f"argv item holds a NUL byte: {word!r}")
    return words


def _check_env(env: Optional[Mapping[str, str]]) -> Dict[str, str]:
    checked: Dict[str, str] = {}
    for name, value in (env or {}).items():
        if not ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        if "\0" in str(value):
            raise ValueError(f"environment value of {name} holds a NUL byte")
        checked[name] = str(value)
    return checked


def _os_error(message: str, path: str) -> OSError:
    """An OSError of the kind the target's message names (messages come with LC_ALL=C)."""
    for needle, code in (("No such file", errno.ENOENT), ("Permission denied", errno.EACCES),
                         ("Is a directory", errno.EISDIR), ("Not a directory", errno.ENOTDIR),
                         ("No space left", errno.ENOSPC), ("Disk quota", errno.EDQUOT)):
        if needle in message:
            return OSError(code, message.strip() or os.strerror(code), path)
    return OSError(errno.EIO, message.strip() or "failed", path)


def _last_line(data: bytes) -> str:
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
        extra = _check_env(env)
        return {**os.environ, **extra} if extra else None

    def run(self, argv: Sequence[str], cwd: Optional[str] = None, input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
            max_output: Optional[int] = None) -> Result:
        words = _check_argv(argv)
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
        words = _check_argv(argv)
        where = self._path(cwd)
        # A relative log path is relative to cwd, as on an ssh target (where the shell cd's first).
        with open(os.path.join(where, self._path(log_path)), "ab") as log:
            proc = subprocess.Popen(words, cwd=where, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=self._environ(env))
        return proc.pid

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


# -- another machine, over ssh -----------------------------------------------------------------

def default_control_dir() -> str:
    """A short private folder for master sockets: $XDG_RUNTIME_DIR (private by design) or /tmp.

    Not tempfile.gettempdir(): $TMPDIR can be long (macOS) and sockets have a ~104-byte limit.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        candidate = os.path.join(runtime, "gitexp-ssh")
        if len(candidate) + CONTROL_NAME_LEN <= SOCKET_PATH_MAX:
            return candidate
    return f"/tmp/gitexp-ssh-{os.getuid()}"


def private_dir(path: str) -> str:
    """Create or check ``path``: a real directory, ours, mode 0700 (anyone who can reach a
    master socket can run commands as us on the remote)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TransportError(f"cannot create the ssh control directory {path}: {exc.strerror}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise TransportError(f"ssh control directory {path} is not a directory", "remove it")
    if st.st_uid != os.getuid():
        raise TransportError(f"ssh control directory {path} belongs to another user (uid {st.st_uid})",
                             "remove it, or pass another control_dir")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _check_host(host: str) -> str:
    # A leading '-' would make ssh read the destination as an option (-oProxyCommand=...).
    if not host or host.startswith("-") or any(c.isspace() or ord(c) < 32 for c in host):
        raise ValueError(f"not an ssh destination: {host!r}")
    return host


def remote_path(path: str) -> str:
    """``path`` quoted for the remote shell; a leading ``~/`` becomes the remote $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def remote_command(argv: Sequence[str], cwd: Optional[str] = None,
                   env: Optional[Mapping[str, str]] = None) -> str:
    """The shell line that runs argv in cwd with env, every word quoted."""
    words = shlex.join(_check_argv(argv))
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in _check_env(env).items())
    command = f"exec env {assignments} {words}" if assignments else f"exec {words}"
    if cwd is None:
        return command
    # 126 as a shell gives for what it cannot run: the same code LocalTransport returns.
    return f"cd -- {remote_path(cwd)} || exit 126\n{command}"


class SshTransport(Transport):
    """Commands and files on ``host`` over OpenSSH, one shared master connection per host.

    ``host`` is any ssh destination (``user@host``, an alias from ~/.ssh/config or from
    ``ssh_config``): it is passed through, never parsed.
    """

    def __init__(self, host: str, ssh_config: Optional[str] = None, port: Optional[int] = None,
                 connect_timeout: int = 10, control_dir: Optional[str] = None,
                 persist: str = "60s") -> None:
        self.host = _check_host(host)
        self.ssh_config = ssh_config
        self.port = int(port) if port is not None else None
        self.connect_timeout = int(connect_timeout)
        self.persist = persist
        self.control_dir = control_dir or default_control_dir()
        if len(self.control_dir) + CONTROL_NAME_LEN > SOCKET_PATH_MAX:
            raise ValueError(f"control_dir {self.control_dir!r} is too long for a unix socket path "
                             f"(at most {SOCKET_PATH_MAX - CONTROL_NAME_LEN} characters)")
        if any(c.isspace() or c in "%\"'" for c in self.control_dir):
            raise ValueError(f"control_dir {self.control_dir!r} may not hold spaces, quotes or '%'")
        # Our own socket name rather than ssh's %C: knowing the path lets us test the master with
        # one connect() instead of an `ssh -O check` process per command.
        key = hashlib.sha1(f"{host}\0{ssh_config}\0{port}".encode()).hexdigest()[:CONTROL_KEY_LEN]
        self.control_path = os.path.join(self.control_dir, key)
        self.name = f"ssh:{host}"
        self._cache: Dict[str, str] = {}

    def __repr__(self) -> str:
        return f"SshTransport({self.host!r})"

    # -- ssh itself ----------------------------------------------------------------------------
    def options(self) -> List[str]:
        """ssh's options, shared by our commands and git's (so git reuses the master too)."""
        private_dir(self.control_dir)
        opts = ["-F", self.ssh_config] if self.ssh_config else []
        if self.port is not None:
            opts += ["-p", str(self.port)]
        return opts + [
            "-T",  # never a tty, even if the user's config asks for one: output stays byte-exact
            "-o", "BatchMode=yes",  # never prompt: fail fast with ssh's message instead
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPersist={self.persist}",
            "-o", f"ControlPath={self.control_path}",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
            "-o", "ClearAllForwardings=yes",  # a LocalForward in the user's config would clash
        ]

    def _ssh(self) -> str:
        ssh = shutil.which("ssh")
        if not ssh:
            raise TransportError("ssh not found on PATH", "install OpenSSH's client (openssh-client)")
        return ssh

    def _control(self, command: str) -> Result:
        return subprocess.run([self._ssh(), *self.options(), "-O", command, "--", self.host], check=False,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=30)

    def master_pid(self) -> Optional[int]:
        """The pid of the local master connection, or None when there is none."""
        if not os.path.exists(self.control_path):
            return None
        proc = self._control("check")
        found = re.search(rb"pid=(\d+)", proc.stderr)
        return int(found.group(1)) if proc.returncode == 0 and found else None

    def _master_up(self) -> bool:
        """A master answers on the socket (a file left by a killed master does not)."""
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(self.control_path)
            except OSError:
                return False
        return True

    def connect(self) -> None:
        """Open the master connection unless one is up; raises TransportError if it cannot.

        One process or thread at a time (a lock file): concurrent first commands would each
        open a connection of their own, and ssh would write "ControlSocket ... already exists,
        disabling multiplexing" into their stderr.
        """
        if self._master_up():
            return
        private_dir(self.control_dir)
        lock = os.open(self.control_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._master_up():
                return
            # -N with ControlPersist: ssh forks to the background once authenticated.
            try:
                proc = subprocess.run([self._ssh(), *self.options(), "-N", "--", self.host], check=False,
                                      capture_output=True, stdin=subprocess.DEVNULL,
                                      timeout=3 * self.connect_timeout + 10)
            except subprocess.TimeoutExpired:
                raise TransportError(f"cannot reach {self.host}: no answer in {3 * self.connect_timeout + 10}s",
                                     self._hint()) from None
            if proc.returncode != 0 or not self._master_up():
                raise self._unreachable(proc.stderr)
        finally:
            os.close(lock)  # closing releases the lock

    def _unreachable(self, stderr: bytes) -> TransportError:
        message = " ".join(stderr.decode(errors="replace").split()) or "ssh failed without a message"
        return TransportError(f"cannot reach {self.host}: {message}", self._hint())

    def _hint(self) -> str:
        try_it = ["ssh", *(["-F", self.ssh_config] if self.ssh_config else []),
                  *(["-p", str(self.port)] if self.port is not None else []), self.host, "true"]
        return f"check that `{shlex.join(try_it)}` works from here"

    def close(self) -> None:
        """Stop the master connection (commands already started on the host keep running)."""
        if os.path.exists(self.control_path):
            self._control("exit")

    def script(self, script: str, input: Optional[bytes] = None,
               timeout: Optional[float] = None, max_output: Optional[int] = None) -> Result:
        """Run a shell script on the host. Every value in it must already be quoted.

        Past ``timeout`` seconds: NoAnswer; past ``max_output`` bytes on stdout: ReplyTooLarge
        (the ssh client is killed; the command may go on there).
        """
        self.connect()
        try:
            proc = capture([self._ssh(), *self.options(), "--", self.host, script], input, timeout, max_output)
        except subprocess.TimeoutExpired:
            raise NoAnswer(f"{self.host} did not answer within {timeout:g}s") from None
        except ReplyTooLarge as exc:
            raise ReplyTooLarge(f"{self.host} answered {exc}") from None
        # ssh exits 255 for its own failures, but so may the remote command: only a master that
        # is gone (the connection broke) makes it ssh's.
        if proc.returncode == 255 and not self._master_up():
            message = " ".join(proc.stderr.decode(errors="replace").split()) or "ssh failed without a message"
            raise ConnectionDropped(f"the connection to {self.host} broke: {message}", self._hint())
        return proc

    # -- the interface -------------------------------------------------------------------------
    def run(self, argv: Sequence[str], cwd: Optional[str] = None, input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
            max_output: Optional[int] = None) -> Result:
        """Runs argv on the host. On timeout the ssh client is killed; the command may go on."""
        return self.script(remote_command(argv, cwd, env), input=input, timeout=timeout, max_output=max_output)

    def spawn(self, argv: Sequence[str], cwd: str, log_path: str,
              env: Optional[Mapping[str, str]] = None) -> int:
        """Starts argv on the host in its own session, so a dropped connection never stops it."""
        words = _check_argv(argv)
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in _check_env(env).items())
        command = f"env {assignments} {shlex.join(words)}" if assignments else shlex.join(words)
        log = remote_path(log_path)
        proc = self.script("\n".join([
            f"cd -- {remote_path(cwd)} || exit 97",
            f": >> {log} || exit 98",
            (f"command -v {shlex.quote(words[0])} >/dev/null 2>&1 || "
             f"{{ printf '%s: command not found\\n' {shlex.quote(words[0])} >&2; exit 127; }}"),
            # setsid: a new session, out of sshd's reach; nohup where setsid is missing (macOS).
            "if command -v setsid >/dev/null 2>&1; then _gx_detach=setsid; else _gx_detach=nohup; fi",
            f"$_gx_detach {command} >> {log} 2>&1 < /dev/null &",
            "_gx_pid=$!",
            # Return once it is in its own session: until setsid has run it would still get
            # a hangup meant for this one (and a caller checking its session sees the old one).
            ('if [ "$_gx_detach" = setsid ] && command -v ps >/dev/null 2>&1; then _gx_i=0; '
             'while [ "$(ps -o sid= -p "$_gx_pid" 2>/dev/null | tr -d \' \')" = "$$" ] && [ $_gx_i -lt 100 ]; '
             'do sleep 0.01; _gx_i=$((_gx_i+1)); done; fi'),
            "echo $_gx_pid",
        ]))
        pid = _last_line(proc.stdout)
        if proc.returncode == 0 and pid.isdigit():
            return int(pid)
        message = f"{self.host}: {proc.stderr.decode(errors='replace').strip()}"
        if proc.returncode == 127:
            raise FileNotFoundError(errno.ENOENT, message, words[0])
        raise _os_error(message, cwd if proc.returncode == 97 else log_path)

    def _checked(self, script: str, path: str, input: Optional[bytes] = None) -> bytes:
        proc = self.script(script, input=input)
        if proc.returncode != 0:
            raise _os_error(f"{self.host}: {proc.stderr.decode(errors='replace').strip()}", path)
        return proc.stdout

    def read_file(self, path: str) -> bytes:
        return self._checked(f"exec env LC_ALL=C cat -- {remote_path(path)}", path)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"not a file mode: {mode:o}")
        target = remote_path(path)
        # A random suffix (and noclobber) so nobody can plant the temporary file beforehand.
        tmp = f"{target}.gitexp-{uuid.uuid4().hex}.tmp"
        self._checked("\n".join([
            "LC_ALL=C; export LC_ALL; umask 077; set -C",
            (f"cat > {tmp} && chmod {mode:o} -- {tmp} && mv -f -- {tmp} {target} "
             f"|| {{ rm -f -- {tmp}; exit 1; }}"),
        ]), path, input=data)

    def exists(self, path: str) -> bool:
        return self.script(f"test -e {remote_path(path)}").returncode == 0

    def disk_free(self, path: str) -> int:
        out = self._checked(f"exec env LC_ALL=C df -Pk -- {remote_path(path)}", path)
        # POSIX df -P: "fs blocks used available capacity% mount"; names may hold spaces, so
        # read the numbers in front of the capacity column.
        found = re.search(rb"(\d+)\s+(\d+)\s+(\d+)\s+\d+%", out.split(b"\n", 1)[-1])
        if not found:
            raise OSError(errno.EIO, f"{self.host}: cannot read df's output: {out[-200:]!r}", path)
        return int(found.group(3)) * 1024

    def which(self, name: str) -> Optional[str]:
        if not name or name.startswith("-"):
            return None
        found = _last_line(self.script(f"command -v {shlex.quote(name)}").stdout)
        return found if found.startswith("/") else None  # builtins and aliases are not programs

    def _ask(self, key: str, script: str) -> str:
        if key not in self._cache:
            proc = self.script(script)
            if proc.returncode != 0:
                raise TransportError(f"{self.host}: {script} failed: {proc.stderr.decode(errors='replace').strip()}")
            self._cache[key] = _last_line(proc.stdout)
        return self._cache[key]

    def home(self) -> str:
        return self._ask("home", 'printf "%s\\n" "$HOME"')

    def user(self) -> str:
        return self._ask("user", "id -un")

    # -- git over the same connection ------------------------------------------------------------
    def git_ssh_command(self) -> str:
        """GIT_SSH_COMMAND for git push/fetch to this host: the same options, the same master."""
        return shlex.join([self._ssh(), *self.options()])

    def git_url(self, path: str) -> str:
        """A git URL for ``path`` on the host, for use with ``git_ssh_command()``.

        scp-like ``host:path`` where possible: it works with any alias (a port set in ssh's
        config included), relative paths are relative to the remote home and git expands
        ``~/`` there itself. With an explicit ``port``, ``ssh://host:port/...``, where a
        relative path becomes ``/~/path`` (git's spelling of "in the remote home").
        """
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        if self.port is None:
            return f"{host}:{path}"
        if path.startswith("/"):
            return f"ssh://{host}:{self.port}{path}"
        rest = path if path.startswith("~") else f"~/{path}"
        return f"ssh://{host}:{self.port}/{rest}"


def transport_for(host: Optional[str], ssh_config: Optional[str] = None, **options: object) -> Transport:
    """This machine for no host, else ssh to it."""
    if not host:
        return LocalTransport()
    return SshTransport(host, ssh_config=ssh_config, **options)  # type: ignore[arg-type]
