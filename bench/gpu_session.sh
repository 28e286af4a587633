#!/usr/bin/env bash
# Everything issue 18 (and 7) needs a CUDA GPU for, in one run of a few minutes:
#   1. bench/gpu.py: one epoch under torch.cuda.set_sync_debug_mode("error") on tensors (the
#      in-memory data moved to the device once, batches gathered there), then the CUDA timing:
#      hand-written loop, pyluz on the same DataLoader, pyluz on tensors gathered on the
#      device, and on tensors copied batch by batch (device_data_share=0);
#   2. the CUDA-only tests: no sync during batches (SGD, Adam), MixedPrecision's float16 and
#      GradScaler, a fit on tensors gathering its batches on the device.
# Run from anywhere:  bash bench/gpu_session.sh   (output: bench/gpu_session.log as well)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print(torch.__version__, torch.cuda.get_device_name(0), f"{torch.cuda.mem_get_info()[0] / 2**30:.1f} GiB free")
PY
{
  python bench/gpu.py --rounds 5 --epochs 3
  python -m pytest -q -p no:cacheprovider -rs tests/test_loop.py tests/callbacks/test_amp.py \
    tests/test_accelerator.py -k "cuda"
} 2>&1 | tee bench/gpu_session.log
