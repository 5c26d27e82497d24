#!/usr/bin/env bash
# Regenerates the bundled traces: tools/regen-traces.sh MOESIM [OUT_DIR]
# MOESIM is the moesim binary; OUT_DIR defaults to traces/bundled. Each file records the exact
# command that made it, so the commands run inside OUT_DIR with bare file names.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: tools/regen-traces.sh MOESIM [OUT_DIR]" >&2
  exit 2
fi
moesim="$(realpath "$1")"
out="${2:-$(dirname "$0")/../traces/bundled}"
mkdir -p "$out"
cd "$out"

# The README's main job: small enough to read every number, weights stored in the file.
"$moesim" gen -o default.h5 --seed 1 --ranks 4 --experts 16 --top-k 4 --hidden 128 --intermediate 32 \
  --layers 2 --tokens 24 --tokens-max 40 --token-dtype bf16 --weight-dtype bf16 --weights stored --x stored

# The seed's scenario (EP8, 256 experts, 32 per rank, top-8, DeepSeek-V3 grouped routing) at a
# size that runs in seconds; weights generated from the seed.
"$moesim" gen -o seed-ep8.h5 --seed 8 --ranks 8 --experts 256 --top-k 8 --hidden 256 --intermediate 64 \
  --layers 1 --tokens 64 --token-dtype bf16 --weight-dtype bf16 --routing grouped --groups 8 --topk-groups 4 \
  --scoring sigmoid --shared-experts 1 --routed-scaling 2.5 --weights seed --x stored
