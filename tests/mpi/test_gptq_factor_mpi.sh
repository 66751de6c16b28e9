#!/bin/bash
# The GPTQ factor shared over 1, 2, 3 and 5 ranks (oversubscribed) and 2
# threads (with act-order: 3 ranks x 2 threads): the same bytes, each within
# fp32 rounding of LAPACK's unblocked factor (test_gptq_factor_mpi.c checks
# that on rank 0).
# Usage: test_gptq_factor_mpi.sh PROGRAM MPIEXEC
set -eu
prog=$1
mpiexec=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for order in plain act-order; do
    "$mpiexec" -n 1 "$prog" "$tmp/ref" 1 $order
    runs=("2 1" "3 1" "5 1" "1 2")
    [ "$order" = plain ] || runs=("3 2")  # act-order only permutes H first
    for run in "${runs[@]}"; do
        set -- $run
        "$mpiexec" -n "$1" "$prog" "$tmp/out" "$2" $order
        if ! cmp -s "$tmp/ref" "$tmp/out"; then
            echo "FAIL: $order factor on $1 ranks x $2 threads differs from 1 rank's" >&2
            exit 1
        fi
        echo "ok: $order, $1 ranks x $2 threads: same bytes as 1 rank"
    done
done
