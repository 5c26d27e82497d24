#!/usr/bin/env bash
# The README's main job: the bundled default trace through a correct MORI + AITER integration,
# then the seed scenario through the broken all-k flow the project grew from, side by side.
# `moesim run` exits 0 when its result matches the reference and 1 when it does not, so this
# script exits 0 exactly when the correct flow matches and the broken one is caught.
set -uo pipefail
cd "$(dirname "$0")/.."
moesim="${1:-build/moesim}"

cat <<'TEXT'
"matches" means: every element of the layer's final output is within the rounding bound of
reference/NUMERICS.md ("How far two results may differ"): the most two results that both round
as the numerics contract says may differ by, given the magnitudes that entered the element.
`moesim run` exits 0 when it matches and 1 when it does not (2: bad input).

== 1. a correct MORI + AITER integration (traces/bundled/default.h5) ==
TEXT
"$moesim" run traces/bundled/default.h5
correct=$?
echo
echo "== 2. the seed's flow: all-k consumer on the seed scenario (traces/bundled/seed-ep8.h5) =="
"$moesim" run traces/bundled/seed-ep8.h5 --consumer all-k
broken=$?
echo
if [ "$correct" -eq 0 ] && [ "$broken" -eq 1 ]; then
  echo "summary: the correct integration matches the reference (exit 0); the seed's all-k flow does not (exit 1), as expected"
  exit 0
fi
echo "summary: UNEXPECTED: the correct integration exited $correct (expected 0), the seed's all-k flow $broken (expected 1)"
exit 1
