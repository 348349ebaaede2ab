#!/usr/bin/env bash
# Create a local venv, install flk-sdk with its test (and kafka) extras, and run the test suite.
# Used by developers and by CI; exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,kafka,lint]"

# confluent-kafka is optional for users but must at least import in CI.
"$venv/bin/python" -c "import confluent_kafka, flk_sdk.kafka; print('confluent-kafka', confluent_kafka.version()[0])"

# The package is typed and linted; both gates are fast.
"$venv/bin/ruff" check src tests ../../tests/cross
"$venv/bin/mypy"

"$venv/bin/python" -m pytest -q "$@"
