#!/usr/bin/env bash
# Seeds for the fuzz targets: small traces of every kind `moesim gen` makes (a few KB each, so
# mutations reach the metadata), and golden and run files of one of them.
# usage: seeds.sh MOESIM OUT_DIR   (writes OUT_DIR/trace/, OUT_DIR/result/, OUT_DIR/ref/)
set -euo pipefail
moesim=$1 out=$2
rm -rf "$out" && mkdir -p "$out/trace" "$out/result" "$out/ref"
small=(--ranks 2 --top-k 2 --hidden 16 --intermediate 8 --scale-block 8)
gen() { "$moesim" gen -o "$out/trace/$1.h5" "${small[@]}" "${@:2}" >/dev/null; }
gen bf16 --experts 4 --tokens 4
gen fp32 --experts 4 --tokens 4 --token-dtype fp32 --weight-dtype fp32
gen fp8 --experts 4 --tokens 4 --token-dtype fp8
gen fnuz --experts 4 --tokens 4 --token-dtype fp8_fnuz --activation gelu_tanh_and_mul
gen shared --experts 4 --tokens 4 --shared-experts 1 --routed-scaling 2.5
gen explicit --experts 4 --tokens 4 --placement explicit --sentinel-rate 0.2
gen eplb --experts 8 --tokens 4 --placement eplb --scoring sigmoid --no-normalize
gen layers --experts 4 --layers 2 --tokens 3 --tokens-max 6 --routing zipf
gen seeded --experts 4 --tokens 4 --weights seed --x seed
cp "$out/trace/bf16.h5" "$out/ref/trace.h5"
"$moesim" golden "$out/ref/trace.h5" -o "$out/ref/golden.h5" >/dev/null
cp "$out/ref/golden.h5" "$out/result/golden.h5"
"$moesim" run "$out/ref/trace.h5" -o "$out/result/run.h5" >/dev/null
"$moesim" run "$out/ref/trace.h5" --dispatch pairs -o "$out/result/run-pairs.h5" >/dev/null
