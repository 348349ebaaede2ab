#!/usr/bin/env bash
# Installs exactly the locked dependencies, builds (library to dist/, tests to build/) and runs the
# tests with Node's built-in runner. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --no-audit --no-fund --loglevel=error
rm -rf dist build
npx --no-install tsc -p tsconfig.json
npx --no-install tsc -p tsconfig.test.json
node --test build/test/*.test.js
