# Shared by scripts/demo and scripts/test: make .venv and install rastir into it.
# Re-running is cheap: pip only checks what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RASTIR_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[all,dev]"
export PATH="$venv/bin:$PATH"
cd "$root"
