#!/usr/bin/env bash
# Install what is needed, lint, and run the whole test suite (VM tests included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not vm"` for the fast inner loop, or
# `-m heavy` for the long proofs left out by default (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# install.sh chose a virtual environment where the system Python is externally managed.
if [ -x .venv/bin/python ]; then
  export PATH="$PWD/.venv/bin:$PATH"
fi
mkdir -p reports
echo "== lint"
ruff check .
yamllint --strict .
ansible-lint --profile production playbooks/
packer fmt -check packer/
git ls-files -z -- ':!*.j2' | xargs -0 grep -lZE '^#!(/usr/bin/env bash|/bin/sh|/bin/bash)' | xargs -0 shellcheck
echo "== tests"
set +e
python3 -m pytest -p no:cacheprovider --junitxml=reports/pytest.xml "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: no test ran" >&2
  exit 1
fi
exit "$status"
