#!/usr/bin/env bash
# Runs the Go SDK's checks: go vet and the full test suite. Modules come
# through the Go module proxy (GOPROXY as configured). Exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null; then
	echo "sdk/go: the go toolchain is not on PATH (Go 1.25 or newer is needed)" >&2
	exit 1
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt: these files need formatting:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -count=1 ./...
