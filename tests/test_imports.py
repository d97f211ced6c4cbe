"""The one-shot CLI stays light: a command talks to the daemon without loading the daemon's heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from nexus_core.testing import DaemonProcess

PROBE = textwrap.dedent("""
    import json, sys
    from nexus_core.cli.main import main
    try:
        main(["auto:list", "--json"])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    watched = ("textual", "sqlmodel", "sqlalchemy", "dramatiq", "nexus_daemon", "pydantic", "redis", "httpx")
    report = {"exit": code, "loaded": {m: m in sys.modules for m in watched}}
    sys.stderr.write("PROBE " + json.dumps(report) + "\\n")
""")


def test_cli_command_does_not_import_daemon_libraries(make_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon: DaemonProcess = make_daemon().start()
    daemon.cli_json("auto:create", "light", "--kind", "noop")
    done = subprocess.run([sys.executable, "-c", PROBE], env=daemon.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The command really ran against the daemon.
    assert [wf["name"] for wf in json.loads(done.stdout)] == ["light"]
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("PROBE ")]
    report = json.loads(line[len("PROBE "):])
    assert report["exit"] == 0
    loaded = report["loaded"]
    heavy = [m for m in ("textual", "sqlmodel", "dramatiq", "nexus_daemon", "sqlalchemy", "redis") if loaded[m]]
    assert heavy == [], f"`nexus auto:list` imported {heavy}; the CLI must stay a thin RPC client"
