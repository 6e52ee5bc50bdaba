"""The ssh transport: commands and files on another machine over OpenSSH (the interface:
:mod:`gitexp.transport`).

``SshTransport`` quotes every word for the remote POSIX shell (``shlex.quote``), so no value
runs anything of its own there; the remote login shell must be POSIX-like (sh, bash, dash, zsh,
ksh). All its commands share one master connection per host (``ControlMaster``) kept in a
private directory, so only the first pays for the handshake; ``git_ssh_command()`` and
``git_url()`` let git push and fetch over the same connection. ssh's own failures (refused,
timed out, host key, authentication, a dropped connection) raise ``TransportError`` with
ssh's message, while a command's own exit 255 stays a result.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import uuid
from typing import Dict, List, Mapping, Optional, Sequence

from .transport import (ConnectionDropped, NoAnswer, ReplyTooLarge, Result, Transport, TransportError, capture,
                        check_argv, check_env, last_line, os_error)

# sun_path holds 104 bytes on macOS (108 on Linux); the socket is "<dir>/<key>" and, while ssh
# creates it, "<dir>/<key>.<16 random chars>".
SOCKET_PATH_MAX = 104
CONTROL_KEY_LEN = 20
CONTROL_NAME_LEN = 1 + CONTROL_KEY_LEN + 17


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
    words = shlex.join(check_argv(argv))
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in check_env(env).items())
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

    def stream(self, argv: Sequence[str], cwd: Optional[str] = None) -> int:
        """ssh with this transport's options (the shared master), streaming instead of capturing;
        255 with the master gone is a dropped connection (ConnectionDropped)."""
        self.connect()
        code = subprocess.run([self._ssh(), *self.options(), "--", self.host, remote_command(argv, cwd)],
                              stdin=subprocess.DEVNULL, check=False).returncode
        if code == 255 and self.master_pid() is None:
            raise ConnectionDropped(f"the connection to {self.host} dropped")
        return code

    def spawn(self, argv: Sequence[str], cwd: str, log_path: str,
              env: Optional[Mapping[str, str]] = None) -> int:
        """Starts argv on the host in its own session, so a dropped connection never stops it."""
        words = check_argv(argv)
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in check_env(env).items())
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
        pid = last_line(proc.stdout)
        if proc.returncode == 0 and pid.isdigit():
            return int(pid)
        message = f"{self.host}: {proc.stderr.decode(errors='replace').strip()}"
        if proc.returncode == 127:
            raise FileNotFoundError(errno.ENOENT, message, words[0])
        raise os_error(message, cwd if proc.returncode == 97 else log_path)

    def _checked(self, script: str, path: str, input: Optional[bytes] = None) -> bytes:
        proc = self.script(script, input=input)
        if proc.returncode != 0:
            raise os_error(f"{self.host}: {proc.stderr.decode(errors='replace').strip()}", path)
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
        found = last_line(self.script(f"command -v {shlex.quote(name)}").stdout)
        return found if found.startswith("/") else None  # builtins and aliases are not programs

    def _ask(self, key: str, script: str) -> str:
        if key not in self._cache:
            proc = self.script(script)
            if proc.returncode != 0:
                raise TransportError(f"{self.host}: {script} failed: {proc.stderr.decode(errors='replace').strip()}")
            self._cache[key] = last_line(proc.stdout)
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
