# Sourced by scripts/run and scripts/test: create .venv and install the project when needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

ensure_venv() {  # ensure_venv EXTRAS STAMP
  local extras="$1" stamp="$venv/.installed-$2"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$stamp" -nt "$root/pyproject.toml" ]; then
    return
  fi
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    for candidate in python3.13 python3.12 python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 &&
         "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        py="$candidate"; break
      fi
    done
  fi
  if [ -z "$py" ]; then
    echo "Nexus needs Python 3.11 or newer; install it or set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  echo "setting up $venv (first run; takes about a minute)…" >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  # PYTHONWARNINGS: setuptools' notes about editable installs are for package authors, not for you.
  PYTHONWARNINGS=ignore "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root$extras" >&2
  touch "$stamp"
}
