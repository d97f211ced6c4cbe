"""scripts/tui-smoke: `nexus` in a real terminal (tmux), keys sent, the screen checked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "tui-smoke"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_tui_smoke_in_tmux() -> None:
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tmux is missing: CI must run the terminal smoke test (apt install tmux)")
        pytest.skip("tmux is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_") and k not in ("REDIS_URL",
                                                                                          "DATABASE_URL")}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
