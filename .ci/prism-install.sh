#!/usr/bin/env bash
# Installs the pinned Prism CLI (Stoplight's OpenAPI mock and validating
# proxy) into the folder given as $1 with npm — never globally — and prints
# the path of its executable on stdout. internal/sandbox/contract_test.go runs
# it as `prism proxy SPEC UPSTREAM --errors` when BATCH_PRISM names it.
# Idempotent: a folder that already holds the pinned version is reused.
set -euo pipefail

PRISM_VERSION=5.16.0 # @stoplight/prism-cli; declares node >=24.18 but runs on node 20

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
command -v npm >/dev/null 2>&1 || { echo "prism-install: npm is not installed" >&2; exit 1; }

mkdir -p "$1"
dir="$(cd "$1" && pwd)"
bin="$dir/node_modules/.bin/prism"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$PRISM_VERSION" ]; then
  echo "$bin"
  exit 0
fi

# --no-save keeps a stray package.json in DIR out of it; npm's chatter goes
# to stderr so that stdout carries only the path.
npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error \
  "@stoplight/prism-cli@$PRISM_VERSION" >&2

got="$("$bin" --version)"
if [ "$got" != "$PRISM_VERSION" ]; then
  echo "prism-install: installed prism reports version $got, want $PRISM_VERSION" >&2
  exit 1
fi
echo "$bin"
