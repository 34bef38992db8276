#!/bin/sh
# The data-parallel training step of a model on one process and on 2 ranks of this machine,
# the 2 ranks without and with the reduction overlapped with the backward pass (buckets of
# 25 MB, NETC_BUCKET_MB=25): time per step split into compute and the gradient all-reduce,
# and the bytes reduced per step (docs/distributed.md, "Measured"). Usage, from the checkout's root after
# `cargo build --release --features mpi`:
#   benches/mpi_step.sh models/lenet.net 64 20 [cpu|vulkan|lavapipe...]
# Arguments: model, global batch, timed steps, device (default cpu). The one process gets both
# cores' threads, each rank one (RAYON_NUM_THREADS); on a shared machine add
# `--mca mpi_yield_when_idle 1` (the default here) so a waiting rank does not spin.
set -e
model=${1:-models/mlp.net}
batch=${2:-128}
reps=${3:-20}
device=${4:-cpu}
netc=${NETC:-target/release/netc}
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "# $(date -u '+%F %T') UTC, load average:$(uptime | sed 's/.*load average://')"
RAYON_NUM_THREADS=$cores "$netc" bench --data-parallel --device "$device" \
    --model "$model" --batch "$batch" --reps "$reps"
for mb in 0 25; do
    echo "# NETC_BUCKET_MB=$mb, load average:$(uptime | sed 's/.*load average://')"
    mpirun -n 2 --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
        -x RAYON_NUM_THREADS=$((cores / 2 > 0 ? cores / 2 : 1)) -x NETC_BUCKET_MB=$mb \
        "$netc" bench --data-parallel --device "$device" --model "$model" --batch "$batch" --reps "$reps"
done
echo "# load average after:$(uptime | sed 's/.*load average://')"
