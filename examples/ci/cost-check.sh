#!/usr/bin/env bash
# cost-check.sh BASE_REF — price every batch manifest changed since BASE_REF.
#
# For each manifest that differs between the merge base of BASE_REF and HEAD,
# it plans the base version (taken with `git show BASE:path`) and the head
# version with `batch plan --format json`, then compares them with
# `batch diff --format markdown`. The Markdown, fit for a pull-request or
# merge-request comment, goes to $COST_REPORT and to stdout. No API key and no
# network are needed: planning is local.
#
# Environment (all optional):
#   BATCH               the batch binary (default: batch, from PATH; install
#                       it from a checkout of batch with go install ./cmd/batch)
#   COST_REPORT         Markdown output file (default: cost-report.md)
#   COST_FAIL_ABOVE     fail when a manifest's total rises by more than this
#                       many credits (batch diff --fail-above)
#   COST_FAIL_INCREASE  fail when a manifest's total rises by more than this
#                       percent of its base total (batch diff --fail-increase)
#   COST_PATHSPEC       git pathspec of candidate files (default: *.yaml *.yml);
#                       only files with top-level `version:` and `jobs:` keys
#                       count as manifests
#
# Exit status: 0 when every changed manifest is within its limits; 3 when a
# diff crossed a threshold or a head manifest is over its own budget (as
# batch itself); 2 when a head manifest is invalid; 1 on any other error.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: cost-check.sh BASE_REF" >&2
  exit 2
fi
base_ref=$1
batch=${BATCH:-batch}
report=${COST_REPORT:-cost-report.md}
read -r -a pathspec <<<"${COST_PATHSPEC:-*.yaml *.yml}"

base=$(git merge-base "$base_ref" HEAD) || { echo "cost-check: no merge base between $base_ref and HEAD" >&2; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# is_manifest FILE: whether FILE looks like a batch manifest (not, say, a
# workflow file).
is_manifest() {
  grep -q '^version:' "$1" && grep -q '^jobs:' "$1"
}

# empty_plan PATH PRICING: a plan with no jobs, standing in for a manifest
# that is new (as the base) or deleted (as the head). It takes the other
# side's price sheet: it has none of its own, and a blank one would read as
# a change of sheet.
empty_plan() {
  local name=${1//\\/\\\\}
  name=${name//\"/\\\"}
  printf '{"manifest": "%s", "pricing": "%s", "jobs": [], "total_credits": 0, "total_usd": "$0.00", "budget": null, "over_budget": false}\n' "$name" "$2"
}

# plan_pricing FILE: the price sheet id of a plan JSON file ("" if none).
plan_pricing() {
  sed -n 's/^  "pricing": "\([A-Za-z0-9._-]*\)",$/\1/p' "$1" | head -n 1
}

status=0
fail() { # fail CODE: remember the most serious exit code (3 > 2 > 1)
  case "$1:$status" in
    3:*) status=3 ;;
    2:0 | 2:1) status=2 ;;
    1:0) status=1 ;;
  esac
}

out="$tmp/report.md"
{
  echo "<!-- batch-cost-check -->"
  echo "## Image cost check"
  echo
  echo "Changed manifests priced against \`$base_ref\` ($(git rev-parse --short "$base"))."
} >"$out"

count=0
while IFS= read -r -d '' path; do
  base_file="$tmp/base/$path"
  has_base=false
  has_head=false
  mkdir -p "$(dirname "$base_file")"
  if git show "$base:$path" >"$base_file" 2>/dev/null && is_manifest "$base_file"; then
    has_base=true
  fi
  if [ -f "$path" ] && is_manifest "$path"; then
    has_head=true
  fi
  if ! $has_base && ! $has_head; then
    continue
  fi
  count=$((count + 1))
  notes="$tmp/notes.md" # remarks printed under the manifest's diff
  : >"$notes"

  # Base plan. A base that no longer plans (say, an engine since renamed)
  # is compared as empty rather than blocking the change that fixes it.
  base_empty=true
  if $has_base; then
    "$batch" plan --format json "$base_file" >"$tmp/base.json" 2>"$tmp/base.err"
    rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then
      base_empty=false
    else
      echo "> The base version does not plan, so it counts as empty: $(head -n 1 "$tmp/base.err")" >>"$notes"
    fi
  fi

  # Head plan: exit 3 means over the manifest's own budget, but the JSON
  # is still printed.
  if $has_head; then
    "$batch" plan --format json "$path" >"$tmp/head.json" 2>"$tmp/head.err"
    rc=$?
    case $rc in
      0) ;;
      3)
        echo "> ❌ **over budget**: $(tail -n 1 "$tmp/head.err")" >>"$notes"
        fail 3
        ;;
      *)
        {
          echo
          echo "### \`$path\`"
          echo
          cat "$notes"
          echo "> ❌ **does not plan** (exit $rc):"
          echo
          echo '```'
          cat "$tmp/head.err"
          echo '```'
        } >>"$out"
        fail "$([ $rc -eq 2 ] && echo 2 || echo 1)"
        continue
        ;;
    esac
  else
    empty_plan "$path" "$(plan_pricing "$tmp/base.json")" >"$tmp/head.json"
  fi
  if $base_empty; then
    empty_plan "$path" "$(plan_pricing "$tmp/head.json")" >"$tmp/base.json"
  fi

  args=(diff --format markdown)
  [ -n "${COST_FAIL_ABOVE:-}" ] && args+=(--fail-above "$COST_FAIL_ABOVE")
  [ -n "${COST_FAIL_INCREASE:-}" ] && args+=(--fail-increase "$COST_FAIL_INCREASE")
  "$batch" "${args[@]}" "$tmp/base.json" "$tmp/head.json" >"$tmp/diff.md" 2>"$tmp/diff.err"
  rc=$?
  case $rc in
    0) ;;
    3)
      echo "> ❌ **over the limit**: $(tail -n 1 "$tmp/diff.err")" >>"$notes"
      fail 3
      ;;
    *)
      echo "> ❌ batch diff failed (exit $rc): $(tail -n 1 "$tmp/diff.err")" >>"$notes"
      fail 1
      ;;
  esac
  echo >>"$out"
  if [ "$(cat "$tmp/diff.md")" = "no cost change" ]; then
    echo "\`$path\`: no cost change" >>"$out"
  else
    cat "$tmp/diff.md" >>"$out"
  fi
  if [ -s "$notes" ]; then
    echo >>"$out"
    cat "$notes" >>"$out"
  fi
done < <(git diff -z --name-only --no-renames "$base" HEAD -- "${pathspec[@]}")

if [ $count -eq 0 ]; then
  echo >>"$out"
  echo "No batch manifests changed." >>"$out"
fi
cp "$out" "$report" || exit 1
cat "$report"
exit $status
