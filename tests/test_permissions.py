"""Who may do what: other unix users reach the daemon through its socket group and get the role configured for them.

Needs root (to run commands as other users); the daemon itself runs as root, so root is its admin.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from nexus_core.testing import DaemonProcess, cleanup, short_tempdir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the tests run `nexus` as other unix users")

VIEWER = "nobody"


def _user(*candidates: str) -> pwd.struct_passwd | None:
    for name in candidates:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry
    return None


def _socket_group() -> str:
    try:
        grp.getgrnam("nogroup")
        return "nogroup"
    except KeyError:
        return grp.getgrgid(pwd.getpwnam(VIEWER).pw_gid).gr_name


# The CLI as another user: this process starts as root, preloads what the CLI imports, then becomes the user with
# exactly that user's groups (plus `extra_groups`) before running `nexus`. `DaemonProcess.cli(user=...)` cannot
# be used: subprocess's `user=` changes only the uid (the child would keep root's gid and groups, and so reach the
# socket through the wrong group), and the interpreter may live where other users cannot read it (/root/.pyenv).
_AS_USER = textwrap.dedent("""
    import os, sys
    uid, gid, groups = int(sys.argv[1]), int(sys.argv[2]), [int(g) for g in sys.argv[3].split(",") if g]
    import nexus_core.cli.main as cli
    import nexus_core.commands.render, nexus_core.config, nexus_core.rpc.client  # noqa: F401
    import rich.console, rich.table, rich.text, rich.markup, rich.highlighter  # noqa: F401
    import typer.core, json, tomllib  # noqa: F401
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    assert (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) == (uid, uid, gid, gid)
    cli.main(sys.argv[4:])
""")


def run_as(daemon: DaemonProcess, user: str, *args: str, extra_groups: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess[str]:
    """`nexus ARGS` run by another unix user (their uid is what the daemon sees on its socket)."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid)) | {grp.getgrnam(g).gr_gid for g in extra_groups}
    return subprocess.run([sys.executable, "-c", _AS_USER, str(entry.pw_uid), str(entry.pw_gid),
                           ",".join(map(str, sorted(groups))), *args],
                          env=daemon.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          cwd="/")


@pytest.fixture(scope="module")
def shared() -> Iterator[DaemonProcess]:
    """One daemon for the module whose socket group lets `nobody` connect; `nobody` is a viewer, and a second
    system user (if there is one) an operator. Root, running the daemon, is its admin."""
    operator = _user("bin", "daemon", "sys")
    config = f'[daemon]\nsocket_group = "{_socket_group()}"\n\n[[operators]]\nuser = "{VIEWER}"\nrole = "viewer"\n'
    if operator is not None:
        config += f'\n[[operators]]\nuser = "{operator.pw_name}"\nrole = "operator"\n'
    home = short_tempdir()
    os.chmod(home, 0o755)  # the socket lives in the data folder: other users must be able to reach it
    daemon = DaemonProcess(home, config=config)
    try:
        daemon.start()
        daemon.operator_user = operator.pw_name if operator else None  # type: ignore[attr-defined]
        done = daemon.cli("auto:create", "report", "--kind", "noop")
        assert done.returncode == 0, done.stderr
        yield daemon
    finally:
        try:
            daemon.stop()
        finally:
            cleanup(home)


def _names(daemon: DaemonProcess) -> list[str]:
    return [wf["name"] for wf in daemon.cli_json("auto:list")]


def test_viewer_reads_but_cannot_change(shared: DaemonProcess) -> None:
    daemon = shared
    listed = run_as(daemon, VIEWER, "auto:list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "report" in listed.stdout
    assert run_as(daemon, VIEWER, "auto:show", "report").returncode == 0

    trigger = run_as(daemon, VIEWER, "auto:trigger", "report")
    assert trigger.returncode == 5, trigger.stderr + trigger.stdout
    assert "operator role" in trigger.stderr and VIEWER in trigger.stderr and "viewer" in trigger.stderr
    assert all(r["triggered_by"] != VIEWER for r in daemon.cli_json("auto:logs", "report")["runs"])

    create = run_as(daemon, VIEWER, "auto:create", "mine", "--kind", "noop")
    assert create.returncode == 5 and "operator role" in create.stderr
    pause = run_as(daemon, VIEWER, "auto:pause", "report")
    assert pause.returncode == 5
    assert "mine" not in _names(daemon)
    assert daemon.cli_json("auto:show", "report")["status"] == "active"


def test_operator_may_create_but_not_command_workflows(shared: DaemonProcess) -> None:
    daemon = shared
    user = daemon.operator_user  # type: ignore[attr-defined]
    if user is None:
        pytest.skip("no second system user (bin, daemon or sys) to configure as operator")
    groups = (_socket_group(),)
    command = run_as(daemon, user, "auto:create", "shell", "--kind", "command",
                     "--payload", '{"argv": ["true"]}', extra_groups=groups)
    assert command.returncode == 5, command.stderr + command.stdout
    assert "admin" in command.stderr and "command" in command.stderr
    assert "shell" not in _names(daemon)

    noop = run_as(daemon, user, "auto:create", "ops-job", "--kind", "noop", "--json", extra_groups=groups)
    assert noop.returncode == 0, noop.stderr
    assert "ops-job" in _names(daemon)
    assert daemon.cli_json("auto:show", "ops-job")["created_by"] == user
    trigger = run_as(daemon, user, "auto:trigger", "report", "--wait", extra_groups=groups)
    assert trigger.returncode == 0, trigger.stderr
    assert "succeeded" in trigger.stdout
    assert daemon.cli_json("auto:logs", "report")["runs"][0]["triggered_by"] == user


def test_unknown_user_is_refused_with_how_to_add_them(shared: DaemonProcess) -> None:
    daemon = shared
    operator = daemon.operator_user  # type: ignore[attr-defined]
    stranger = _user(*(u for u in ("daemon", "sys", "games", "man", "mail", "bin") if u != operator))
    if stranger is None:
        pytest.skip("no system user left that is not configured")
    # In the socket's group, so they can connect, but in no [[operators]] rule.
    done = run_as(daemon, stranger.pw_name, "auto:list", extra_groups=(_socket_group(),))
    assert done.returncode == 5, done.stderr + done.stdout
    assert stranger.pw_name in done.stderr and "[[operators]]" in done.stderr and "nexus.toml" in done.stderr

    # Not even in the socket's group: the socket itself refuses them, and the message says which setting helps.
    done = run_as(daemon, stranger.pw_name, "auto:list", extra_groups=())
    assert done.returncode == 3, done.stderr + done.stdout
    assert "permission denied" in done.stderr and "socket_group" in done.stderr


def test_an_admin_of_another_organization_sees_only_its_own_and_no_sql_console() -> None:
    # `nobody` administers organization "acme"; root (the daemon's user) the daemon's own, "default".
    config = (f'[daemon]\nsocket_group = "{_socket_group()}"\n\n'
              f'[[operators]]\nuser = "{VIEWER}"\nrole = "admin"\norganization = "acme"\n')
    home = short_tempdir()
    os.chmod(home, 0o755)
    daemon = DaemonProcess(home, config=config)
    try:
        daemon.start()
        assert daemon.cli("auto:create", "payroll-export", "--kind", "noop").returncode == 0
        made = run_as(daemon, VIEWER, "auto:create", "acme-sync", "--kind", "noop", "--json")
        assert made.returncode == 0, made.stderr
        assert _names(daemon) == ["payroll-export"]
        theirs = run_as(daemon, VIEWER, "auto:list", "--json")
        assert theirs.returncode == 0 and "acme-sync" in theirs.stdout and "payroll-export" not in theirs.stdout
        show = run_as(daemon, VIEWER, "auto:show", "payroll-export")
        assert show.returncode == 4, show.stderr + show.stdout

        # SQL reads every organization's rows, so an admin of "acme" may not run it, even in god mode.
        assert run_as(daemon, VIEWER, "mode:god").returncode == 0
        query = run_as(daemon, VIEWER, "db:query", "SELECT name FROM workflows")
        assert query.returncode == 5, query.stderr + query.stdout
        assert "every organization" in query.stderr and "'default'" in query.stderr and "payroll" not in query.stdout
        assert daemon.cli("mode:god").returncode == 0
        ours = daemon.cli("db:query", "SELECT name FROM workflows ORDER BY name")
        assert ours.returncode == 0 and "acme-sync" in ours.stdout and "payroll-export" in ours.stdout
    finally:
        try:
            daemon.stop()
        finally:
            cleanup(home)
