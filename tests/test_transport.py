"""Transports against the real thing: this machine, and a real sshd on loopback (scripts/sshd-up.sh).

Most tests run once per transport (``local`` and ``ssh``): what a runner sees must not depend
on where the command runs. The ssh-only tests cover quoting against a real remote shell, the
shared master connection, dropped connections and ssh's own failures.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest
from conftest import git, make_repo, wait_for
from fake_transport import FakeTransport
from sshd import SshHost, short_dir, ssh_host, ssh_transport  # noqa: F401  (fixtures)

from gitexp.ssh_transport import SshTransport, default_control_dir, remote_command
from gitexp.transport import LocalTransport, Transport, TransportError

# Words a careless remote command line would run, split or expand. MARK is replaced by a
# marker path that must never come into existence.
HOSTILE = [
    "plain", "with space", "  lead and trail  ", "", "single'quote", 'double"quote', "'\"'\"'",
    "semi;colon; touch MARK", "`touch MARK`", "$(touch MARK)", "${HOME}", "$HOME", "$$", "$0",
    "new\nline; touch MARK", "tab\there", "star *", "*", "?", "[a-z]", "{a,b}", "~", "~/x", "~root",
    "-n", "--", "-e \\x41", "back\\slash", "pipe | touch MARK", "a && touch MARK", "> MARK",
    "< /etc/passwd", "#comment", "!bang", "unicode ✓ é", "%s %d", "\x01\x7f", "a=b", "exit 3",
]
# Names that are also valid file and directory names (no '/', not '', '.', '..').
HOSTILE_NAMES = ["with space", "single'quote", 'double"quote', "$(touch MARK)", "`touch MARK`",
                 "semi;colon", "new\nline", "*", "~", "-n", "--", "back\\slash", "unicode ✓ é", "#x", "a b\tc"]


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport()
    else:
        yield request.getfixturevalue("ssh_transport")


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a quoted value ran a command on the target"


def hostile(marker: Path) -> List[str]:
    return [value.replace("MARK", str(marker)) for value in HOSTILE]


def hostile_names(marker: Path) -> List[str]:
    return [value.replace("MARK", marker.name) for value in HOSTILE_NAMES]


# -- quoting -------------------------------------------------------------------------------------

def test_every_argv_word_arrives_byte_exact(transport: Transport, marker: Path) -> None:
    values = hostile(marker)
    proc = transport.run(["printf", "%s\\0", *values])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split("\0")[:-1] == values


def test_a_hostile_word_as_the_whole_command_runs_nothing(transport: Transport, marker: Path) -> None:
    for value in hostile(marker):
        if value.startswith(("semi", "`", "$(", "new", "pipe", "a &&", ">")):
            proc = transport.run([value])
            assert proc.returncode == 127, (value, proc)


def test_env_values_arrive_byte_exact(transport: Transport, marker: Path) -> None:
    values = hostile(marker)
    env = {f"GX_V{i}": value for i, value in enumerate(values)}
    script = "printf '%s\\0' " + " ".join(f'"$GX_V{i}"' for i in range(len(values)))
    proc = transport.run(["sh", "-c", script], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split("\0")[:-1] == values


def test_env_adds_to_the_targets_environment(transport: Transport) -> None:
    proc = transport.run(["sh", "-c", 'printf "%s|%s" "$GX_ADDED" "${PATH:+has-path}"'], env={"GX_ADDED": "1"})
    assert proc.stdout == b"1|has-path"


def test_bad_env_names_are_refused_before_anything_runs(transport: Transport) -> None:
    with pytest.raises(ValueError):
        transport.run(["true"], env={"A;touch x": "1"})
    with pytest.raises(ValueError):
        transport.run(["printf", "a\0b"])


def test_cwd_with_hostile_names(transport: Transport, tmp_path: Path, marker: Path) -> None:
    for name in hostile_names(marker):
        folder = tmp_path / name
        folder.mkdir()
        proc = transport.run(["pwd"], cwd=str(folder))
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout == os.fsencode(folder) + b"\n"


def test_remote_command_quotes_every_word() -> None:
    line = remote_command(["echo", "$(x)", "a b"], cwd="/w d", env={"V": "`y`"})
    assert line == "cd -- '/w d' || exit 126\nexec env 'V=`y`' echo '$(x)' 'a b'"


# -- run -----------------------------------------------------------------------------------------

def test_input_reaches_stdin_and_no_input_means_empty_stdin(transport: Transport) -> None:
    data = bytes(range(256)) * 100
    assert transport.run(["cat"], input=data).stdout == data
    started = time.time()
    assert transport.run(["cat"]).stdout == b""  # never gitexp's own stdin
    assert time.time() - started < 10


def test_exit_codes_and_stderr_come_back(transport: Transport) -> None:
    proc = transport.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, b"out\n", b"err\n")


def test_exit_255_of_the_command_is_a_result_not_a_transport_error(transport: Transport) -> None:
    assert transport.run(["sh", "-c", "exit 255"]).returncode == 255


def test_missing_program_is_127_and_missing_cwd_is_126(transport: Transport, tmp_path: Path) -> None:
    assert transport.run(["gx-no-such-program"]).returncode == 127
    proc = transport.run(["true"], cwd=str(tmp_path / "missing"))
    assert proc.returncode == 126 and b"missing" in proc.stderr


def test_timeout_raises(transport: Transport) -> None:
    # here: subprocess's own TimeoutExpired; over ssh: NoAnswer, a TransportError naming the host
    # (the command was killed here and may go on there: issue 16's round trips say so)
    from gitexp.transport import NoAnswer

    with pytest.raises((subprocess.TimeoutExpired, NoAnswer)):
        transport.run(["sleep", "5"], timeout=0.5)


# -- files ---------------------------------------------------------------------------------------

def test_files_with_odd_names_round_trip(transport: Transport, tmp_path: Path, marker: Path) -> None:
    blobs = [b"", b"plain\n", bytes(range(256)), b"\r\n\0" * 1000, os.urandom(300_000)]
    for index, name in enumerate(hostile_names(marker)):
        path = str(tmp_path / name)
        data = blobs[index % len(blobs)]
        assert index or not transport.exists(path)
        transport.write_file(path, data, mode=0o640)
        assert transport.exists(path)
        assert transport.read_file(path) == data
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == sorted(hostile_names(marker))  # no temporary files left


def test_write_file_replaces_whole_files_only(transport: Transport, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old" * 1000)
    transport.write_file(str(path), b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        transport.write_file(str(tmp_path / "no-dir" / "f"), b"x")
    assert os.listdir(tmp_path) == ["f"]


def test_read_errors_are_os_errors_of_the_right_kind(transport: Transport, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        transport.read_file(str(tmp_path / "missing"))
    with pytest.raises(IsADirectoryError):
        transport.read_file(str(tmp_path))


def test_home_paths_mean_the_targets_home(transport: Transport) -> None:
    home = transport.home()
    name = f".gitexp-transport-test-{uuid.uuid4().hex}"
    try:
        transport.write_file(f"~/{name}", b"at home")
        assert Path(home, name).read_bytes() == b"at home"
        assert transport.read_file(f"~/{name}") == b"at home"
        assert transport.exists(f"~/{name}")
    finally:
        Path(home, name).unlink(missing_ok=True)


def test_facts_about_the_target(transport: Transport, tmp_path: Path) -> None:
    user = transport.user()
    assert user == pwd.getpwuid(os.getuid()).pw_name
    assert os.path.isabs(transport.home())
    assert transport.which("sh") and os.path.isabs(transport.which("sh") or "")
    assert transport.which("gx-no-such-program") is None
    free = transport.disk_free(str(tmp_path))
    expected = shutil.disk_usage(tmp_path).free
    assert abs(free - expected) < 1 << 30  # the same disk: other writers may change it a little


# -- spawn ---------------------------------------------------------------------------------------

def test_spawn_detaches_and_logs(transport: Transport, tmp_path: Path, marker: Path) -> None:
    folder = tmp_path / "with space $(touch MARK)".replace("MARK", marker.name)
    folder.mkdir()
    log = folder / "out 'log'"
    values = hostile(marker)
    pid = transport.spawn(["sh", "-c", 'printf "%s\\0" "$@"; printf "[%s]" "$GX_E"', "sh", *values],
                          cwd=str(folder), log_path=log.name, env={"GX_E": "a b;`c`"})  # relative to cwd
    wait_for(lambda: log.exists() and log.read_bytes().endswith(b"[a b;`c`]"), timeout=20)
    assert log.read_bytes().split(b"\0")[:-1] == [os.fsencode(v) for v in values]
    assert isinstance(pid, int) and pid > 1


def test_spawn_failures_raise_os_errors(transport: Transport, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        transport.spawn(["true"], cwd=str(tmp_path / "missing"), log_path=str(tmp_path / "log"))
    with pytest.raises(FileNotFoundError):
        transport.spawn(["gx-no-such-program"], cwd=str(tmp_path), log_path=str(tmp_path / "log"))


def test_stream_passes_the_output_through_and_returns_the_exit_code(
        transport: Transport, tmp_path: Path, marker: Path, capfd: pytest.CaptureFixture[str]) -> None:
    words = hostile(marker)
    code = transport.stream(["sh", "-c", 'printf "%s\\0" "$@"; echo err-line >&2; exit 3', "sh", *words],
                            cwd=str(tmp_path))
    assert code == 3
    out, err = capfd.readouterr()
    assert out.endswith("\0".join(words) + "\0")  # every word as given, nothing run
    assert "err-line" in err


def test_signal_reaches_a_process_group_and_says_when_there_is_none(transport: Transport, tmp_path: Path) -> None:
    import signal as signals

    import psutil

    pid = transport.spawn(["sh", "-c", "sleep 30 & sleep 30"], cwd=str(tmp_path), log_path="s.log")
    wait_for(lambda: len(psutil.Process(pid).children()) == 2, timeout=10)
    child = psutil.Process(pid).children()[0].pid
    transport.signal(pid, signals.SIGTERM, group=True)  # the spawned session's whole group

    def gone(p: int) -> bool:
        try:
            os.waitpid(p, os.WNOHANG)  # our own child (local): reap it
        except ChildProcessError:
            pass
        return not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE

    wait_for(lambda: gone(pid) and gone(child), timeout=10)
    wait_for(lambda: not psutil.pid_exists(pid), timeout=10)
    with pytest.raises(ProcessLookupError):
        transport.signal(pid, signals.SIGTERM)


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_spawned_process_survives_losing_the_connection(ssh_host: SshHost, ssh_transport: SshTransport,
                                                        tmp_path: Path, how: str) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    script = ("sleep 1.5; i=0; while [ $i -lt 5 ]; do echo line$i; i=$((i+1)); sleep 0.1; done; "
              f"echo finished > '{out}'")
    pid = ssh_transport.spawn(["sh", "-c", script], cwd=str(tmp_path), log_path=str(log))
    # Its own session: no signal meant for the ssh session's processes reaches it.
    assert os.getsid(pid) == pid
    if how == "kill":
        ssh_host.kill_master(ssh_transport)  # the TCP connection drops without goodbye
    else:
        ssh_transport.close()  # ssh -O exit
    assert ssh_transport.master_pid() is None
    os.kill(pid, 0)  # still running
    wait_for(lambda: out.exists(), timeout=20)
    assert out.read_text() == "finished\n"
    assert log.read_text() == "".join(f"line{i}\n" for i in range(5))


# -- the master connection and ssh's own failures ------------------------------------------------

def test_commands_share_one_master_until_close(ssh_transport: SshTransport) -> None:
    assert ssh_transport.master_pid() is None
    ssh_transport.run(["true"])
    master = ssh_transport.master_pid()
    assert master is not None
    ssh_transport.run(["true"])
    assert ssh_transport.master_pid() == master
    ssh_transport.close()
    assert ssh_transport.master_pid() is None
    assert ssh_transport.run(["echo", "again"]).stdout == b"again\n"  # reconnects on demand


def test_concurrent_first_commands_share_one_connection(ssh_transport: SshTransport) -> None:
    results: List[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda i=i: results.append(ssh_transport.run(["echo", str(i)])))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.stdout for r in results) == [f"{i}\n".encode() for i in range(8)]
    assert [r.stderr for r in results] == [b""] * 8  # no "ControlSocket ... already exists" noise
    assert ssh_transport.master_pid() is not None


def test_a_killed_master_is_replaced(ssh_host: SshHost, ssh_transport: SshTransport) -> None:
    ssh_transport.run(["true"])
    old = ssh_host.kill_master(ssh_transport)
    assert ssh_transport.run(["echo", "ok"]).stdout == b"ok\n"
    assert ssh_transport.master_pid() not in (None, old)


def test_control_dir_is_created_private(ssh_transport: SshTransport) -> None:
    shutil.rmtree(ssh_transport.control_dir)
    ssh_transport.run(["true"])
    st = os.lstat(ssh_transport.control_dir)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()
    assert stat.S_ISSOCK(os.lstat(ssh_transport.control_path).st_mode)
    assert os.path.dirname(ssh_transport.control_path) == ssh_transport.control_dir


def test_control_dir_too_open_is_tightened(ssh_transport: SshTransport) -> None:
    os.chmod(ssh_transport.control_dir, 0o777)
    ssh_transport.run(["true"])
    assert stat.S_IMODE(os.stat(ssh_transport.control_dir).st_mode) == 0o700


def test_control_dir_not_ours_or_a_symlink_is_refused(ssh_host: SshHost) -> None:
    target = short_dir()
    link = target + "-link"
    os.symlink(target, link)
    try:
        with pytest.raises(TransportError, match="not a directory"):
            ssh_host.transport(control_dir=link).run(["true"])
        if os.getuid() == 0:
            os.chown(target, 65534, 65534)
            with pytest.raises(TransportError, match="another user"):
                ssh_host.transport(control_dir=target).run(["true"])
    finally:
        os.unlink(link)
        shutil.rmtree(target)


def test_control_dir_must_be_short_and_the_default_is() -> None:
    with pytest.raises(ValueError, match="too long"):
        SshTransport("somehost", control_dir="/tmp/" + "x" * 80)
    assert len(default_control_dir()) + 58 <= 104


def test_hosts_that_look_like_options_are_refused() -> None:
    for host in ["-oProxyCommand=touch /tmp/x", "", "a b", "a\nb"]:
        with pytest.raises(ValueError):
            SshTransport(host)


def test_connection_refused_is_one_clear_error_quickly(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = SshTransport("127.0.0.1", ssh_config=os.devnull, port=port, connect_timeout=5,
                             control_dir=short_dir())
    started = time.time()
    with pytest.raises(TransportError) as info:
        transport.run(["true"])
    assert time.time() - started < 5
    assert "cannot reach 127.0.0.1" in str(info.value) and "Connection refused" in str(info.value)
    with pytest.raises(TransportError):
        transport.exists("/")
    shutil.rmtree(transport.control_dir)


def test_a_silent_server_times_out_after_connect_timeout() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)  # accepts TCP, never says a word of SSH
    accepted: List[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    transport = SshTransport("127.0.0.1", ssh_config=os.devnull, port=server.getsockname()[1],
                             connect_timeout=2, control_dir=short_dir())
    started = time.time()
    try:
        with pytest.raises(TransportError, match="cannot reach 127.0.0.1"):
            transport.run(["true"])
        assert time.time() - started < 10
    finally:
        server.close()
        for conn in accepted:
            conn.close()
        shutil.rmtree(transport.control_dir)


@pytest.mark.parametrize("broken, message", [("key", "Permission denied"),
                                              ("known_hosts", "Host key verification failed")])
def test_ssh_refusals_carry_sshs_message(ssh_host: SshHost, tmp_path: Path, broken: str, message: str) -> None:
    text = Path(ssh_host.config).read_text()
    if broken == "key":
        text = text.replace(ssh_host.key, str(tmp_path / "no-such-key"))
    else:
        (tmp_path / "empty").write_text("")
        text = text.replace(os.path.join(ssh_host.state_dir, "known_hosts"), str(tmp_path / "empty"))
    config = tmp_path / "config"
    config.write_text(text)
    transport = SshTransport(ssh_host.alias, ssh_config=str(config), control_dir=short_dir())
    try:
        with pytest.raises(TransportError, match=message) as info:
            transport.run(["true"])
        assert info.value.hint and str(config) in info.value.hint  # the ssh command to try by hand
    finally:
        shutil.rmtree(transport.control_dir)


# -- git over the same connection -----------------------------------------------------------------

def test_git_push_and_fetch_over_the_transport(ssh_host: SshHost, ssh_transport: SshTransport,
                                               tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    env = {**os.environ, "GIT_SSH_COMMAND": ssh_transport.git_ssh_command()}
    ssh_transport.run(["true"])
    master = ssh_transport.master_pid()
    url = ssh_transport.git_url(str(bare))
    assert url == f"{ssh_host.alias}:{bare}"
    subprocess.run(["git", "push", "-q", url, "main"], cwd=repo, env=env, check=True, capture_output=True)
    assert ssh_transport.master_pid() == master  # git used our master connection
    head = git(repo, "rev-parse", "main").strip()
    assert git(bare, "rev-parse", "main").strip() == head
    # an explicit port: ssh:// form; a home-relative path: ~/ expanded by git on the remote
    name = f".gitexp-transport-test-{uuid.uuid4().hex}.git"
    ported = SshTransport(ssh_host.alias, ssh_config=ssh_host.config, port=ssh_host.port,
                          control_dir=ssh_transport.control_dir)
    home = Path(ssh_transport.home())
    try:
        shutil.copytree(bare, home / name)
        for url in (ported.git_url(name), ssh_transport.git_url(f"~/{name}"), ssh_transport.git_url(name)):
            proc = subprocess.run(["git", "ls-remote", url, "main"], check=False, cwd=repo, capture_output=True, text=True,
                                  env={**os.environ, "GIT_SSH_COMMAND": ported.git_ssh_command()})
            assert proc.returncode == 0 and proc.stdout.split()[0] == head, (url, proc.stderr)
    finally:
        ported.close()
        shutil.rmtree(home / name, ignore_errors=True)


def test_git_url_forms() -> None:
    assert SshTransport("gpu3").git_url("/srv/r.git") == "gpu3:/srv/r.git"
    assert SshTransport("me@gpu3").git_url("~/r.git") == "me@gpu3:~/r.git"
    assert SshTransport("gpu3", port=2222).git_url("r.git") == "ssh://gpu3:2222/~/r.git"
    assert SshTransport("gpu3", port=2222).git_url("/r.git") == "ssh://gpu3:2222/r.git"
    assert SshTransport("::1").git_url("r") == "[::1]:r"


# -- the fake ---------------------------------------------------------------------------------------

def test_fake_records_calls_and_answers_from_rules() -> None:
    fake = FakeTransport()
    fake.on(["sbatch", "--parsable"], stdout="42\n", times=1)
    fake.on(lambda argv: argv[0] == "squeue", stdout="RUNNING\n")
    assert fake.run(["sbatch", "--parsable", "x.sh"], cwd="/w", input=b"s").stdout == b"42\n"
    assert fake.run(["sbatch", "--parsable", "x.sh"]).stdout == b""  # the rule was used up
    assert fake.run(["squeue", "-h"], env={"A": "1"}).stdout == b"RUNNING\n"
    assert fake.commands() == [["sbatch", "--parsable", "x.sh"]] * 2 + [["squeue", "-h"]]
    assert fake.calls[0].cwd == "/w" and fake.calls[0].input == b"s" and fake.calls[2].env == {"A": "1"}
    assert fake.spawn(["train"], cwd="/w", log_path="/w/log") + 1 == fake.spawn(["t"], "/w", "/w/log")
    strict = FakeTransport(strict=True)
    with pytest.raises(AssertionError, match="no rule"):
        strict.run(["anything"])


def test_fake_files_and_failures() -> None:
    fake = FakeTransport(home="/home/u", programs={"git": "/usr/bin/git"})
    fake.write_file("~/runs/a.json", b"{}", mode=0o600)
    assert fake.files == {"/home/u/runs/a.json": b"{}"} and fake.modes["/home/u/runs/a.json"] == 0o600
    assert fake.read_file("runs/a.json") == b"{}" and fake.exists("/home/u/runs")
    assert fake.which("git") == "/usr/bin/git" and fake.which("sbatch") is None
    with pytest.raises(FileNotFoundError):
        fake.read_file("/nope")
    fake.unreachable = "ssh: connect to host gpu3 port 22: Connection refused"
    with pytest.raises(TransportError, match="Connection refused"):
        fake.run(["true"])
