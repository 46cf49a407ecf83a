#!/bin/sh
# render.sh SHARDS RATE IMAGE — print jobs.yaml for SHARDS shards, ready for
# `kubectl apply -f -`.
#
#   SHARDS  how many shards (pods) run at once, 2 or more (for one, run
#           batch run without --shard)
#   RATE    the account's whole rate limit as N/DURATION, e.g. 150/10s; each
#           shard runs at RATE/SHARDS (batch run --shard K/N divides --rate
#           by N), so SHARDS must not exceed N
#   IMAGE   a container image with batch and a POSIX sh (see Dockerfile)
#
# It replaces __SHARDS__, __RATE__ and __IMAGE__ in jobs.yaml beside this
# script and checks nothing else is left to fill. Exit status: 0 rendered,
# 2 bad arguments.
set -eu

usage() {
  echo "usage: render.sh SHARDS RATE IMAGE   (e.g. render.sh 3 150/10s registry.example.com/batch:1)" >&2
  exit 2
}
[ $# -eq 3 ] || usage
shards=$1 rate=$2 image=$3

case $shards in
  '' | *[!0-9]* | 0* | 1) echo "render.sh: SHARDS must be a whole number from 2, not \"$shards\"" >&2; exit 2 ;;
esac
count=${rate%%/*}
case $rate in
  */*/* | */ | /*) count=x ;;
  */*) ;;
  *) count=x ;;
esac
case $count in
  '' | *[!0-9]* | 0*) echo "render.sh: RATE must be N/DURATION such as 150/10s, not \"$rate\"" >&2; exit 2 ;;
esac
case ${rate#*/} in
  *[!0-9a-z.]*) echo "render.sh: RATE must be N/DURATION such as 150/10s, not \"$rate\"" >&2; exit 2 ;;
esac
case $image in
  '' | *[!A-Za-z0-9._/:@-]*) echo "render.sh: IMAGE must be an image reference such as registry.example.com/batch:1, not \"$image\"" >&2; exit 2 ;;
esac
if [ "$shards" -gt "$count" ]; then
  # batch gives each shard at least 1 request per window: more shards than
  # that would together go over the account's limit.
  echo "render.sh: $shards shards cannot split $rate: at most $count (one request per window each)" >&2
  exit 2
fi
each=$((count / shards))
window=${rate#*/}
if [ $((each * shards)) -ne "$count" ]; then
  echo "render.sh: note: $rate does not split evenly into $shards: each shard runs at $each/$window, $((each * shards))/$window in all" >&2
fi

dir=$(dirname "$0")
out=$(sed -e "s|__SHARDS__|$shards|g" -e "s|__RATE__|$rate|g" -e "s|__IMAGE__|$image|g" -e "s|__EACH__|$each/$window|g" "$dir/jobs.yaml")
case $out in
  *__[A-Z]*__*) echo "render.sh: jobs.yaml has a placeholder render.sh does not fill" >&2; exit 1 ;;
esac
printf '%s\n' "$out"
