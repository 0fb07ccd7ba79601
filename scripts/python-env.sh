#!/usr/bin/env bash
# A Python with Luigi (from PyPI) for the Luigi runner's tests: a venv under
# ${SGNODE_PY_VENV:-${CARGO_TARGET_DIR:-target}/py-venv}, made on first use.
# Installs python3, python3-venv and python3-pip with apt-get when the machine
# has no python3 able to make a venv. Prints the venv's interpreter (an
# absolute path) on stdout; everything else goes to stderr. Fails if Luigi
# cannot be installed: the tests must then fail, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SGNODE_PY_VENV:-${CARGO_TARGET_DIR:-target}/py-venv}
mkdir -p "$venv"
venv=$(cd "$venv" && pwd)
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import luigi" 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  echo "installing python3, python3-venv, python3-pip with apt-get" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >&2
fi
python3 -m venv --clear "$venv" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check luigi >&2
"$venv/bin/python" -c "import luigi; print('luigi', luigi.__version__)" >&2
echo "$venv/bin/python"
