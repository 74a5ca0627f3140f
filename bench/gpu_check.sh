#!/usr/bin/env bash
# One GPU check of ablate, sized for <= 8 minutes on one GPU with no network: what it finds, the CUDA-marked
# tests, bench/train_step.py against timm, `ablate bench` on the references study (the paper-style throughput
# table), and the quick roadmap at a larger budget on the GPU (time-boxed).
# Every step is time-boxed (the roadmap gets what is left) and the script goes on past failures; everything lands in $OUT (or the folder given):
#   summary.txt (the figures), log.txt (every step's output), results.csv (the roadmap's rows),
#   bench-references.csv (`ablate bench`'s rows).
#
#   bench/gpu_check.sh --prepare     # HERE, with network: wheels of what the GPU image lacks + the data -> .gpu/
#   bench/gpu_check.sh [OUTDIR]      # THERE, from the repo root (carry .gpu along); OUTDIR defaults to $OUT
#
# Nothing is installed from the network: ablate runs from the checkout (PYTHONPATH), missing Python packages
# come from .gpu/wheels (pip --no-index) when they are there, Fashion-MNIST from /usr/share/datasets or
# .gpu/fashion-mnist (else the roadmap runs on synthetic data and says so). Without a GPU it still runs every
# step it can and says what it skipped. GPU_CHECK_BUDGET (seconds, default 450) bounds the whole run.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
NEEDED="pydantic optuna fvcore timm torchvision typer yaml pandas matplotlib scipy tabulate pyarrow tqdm"

if [ "${1:-}" = "--prepare" ]; then
    # Pure-Python and cp312 manylinux wheels of the packages the GPU image lacks (its python3 is 3.12), at the
    # versions installed here; fvcore and iopath ship only sdists, so they are built into a wheel here.
    set -e
    mkdir -p .gpu/wheels
    grep -qx '.gpu/' .gitignore 2>/dev/null || echo '.gpu/' >> .gitignore
    ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
    pkgs=""
    for p in pydantic pydantic_core annotated_types typing_inspection typing_extensions optuna alembic sqlalchemy \
             mako colorlog yacs termcolor greenlet; do
        pkgs="$pkgs $p==$(ver "$p" 2>/dev/null || echo missing)"
    done
    pkgs=${pkgs//==missing/}
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/wheels $pkgs
    "$PY" -m pip wheel --quiet --no-deps -w .gpu/wheels "fvcore==$(ver fvcore)" "iopath==$(ver iopath)"
    if [ -d /usr/share/datasets/fashion-mnist ]; then
        mkdir -p .gpu/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/
    fi
    du -sh .gpu/wheels .gpu/fashion-mnist 2>/dev/null
    ls .gpu/wheels
    echo "ready: run bench/gpu_check.sh on the GPU machine with .gpu carried along"
    exit 0
fi

OUT_DIR=${1:-${OUT:-$ROOT/gpu-check-out}}
mkdir -p "$OUT_DIR"
SUMMARY=$OUT_DIR/summary.txt
LOG=$OUT_DIR/log.txt
: > "$SUMMARY"
: > "$LOG"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 ABLATE_OFFLINE=1 ABLATE_CACHE_DIR=$WORK/cache MPLBACKEND=Agg
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step NAME MAX_SECONDS CMD...: run with a time limit (capped by what is left of the budget), log its output,
# record its exit status and duration in the summary
step() {
    local name=$1 max=$2 t0 rc limit
    shift 2
    limit=$(left)
    [ "$limit" -gt "$max" ] && limit=$max
    if [ "$limit" -lt 10 ]; then say "[$name] skipped: budget spent"; return 0; fi
    echo "===== $name (limit ${limit}s): $*" >> "$LOG"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    rc=$?
    say "[$name] exit $rc$([ $rc = 124 ] && echo ' (time limit)') in $(( $(date +%s) - t0 ))s"
    return $rc
}

say "ablate GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
say "== environment"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$SUMMARY"
else
    say "gpu: no nvidia-smi"
fi
say "python: $(command -v "$PY") $("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
"$PY" - << 'EOF' 2>&1 | tee -a "$SUMMARY"
try:
    import torch
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, available {cuda}"
          + (f", {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}" if cuda else ""))
except Exception as e:  # noqa: BLE001
    print(f"torch: cannot import ({type(e).__name__}: {e})")
EOF

missing() {
    "$PY" - $NEEDED << 'EOF' 2>/dev/null
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}
say "== packages"
MISSING=$(missing)
install_wheels() {  # install_wheels all|absent: the carried wheels (absent: only distributions the image lacks)
    local wheels
    wheels=$("$PY" - "$1" "$ROOT"/.gpu/wheels/*.whl << 'EOF'
import importlib.metadata as md, os, sys
for w in sys.argv[2:]:
    dist = os.path.basename(w).split("-")[0]
    try:
        md.version(dist)
        present = True
    except md.PackageNotFoundError:
        present = False
    if sys.argv[1] == "all" or not present:
        print(w)
EOF
)
    [ -z "$wheels" ] && return 0
    say "installing into $WORK/site (no index, $1): $(for w in $wheels; do basename "$w" | cut -d- -f1; done | tr '\n' ' ')"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$WORK/site" $wheels \
        >> "$LOG" 2>&1 || say "pip install from .gpu/wheels failed (see log.txt)"
    case ":$PYTHONPATH:" in *":$WORK/site:"*) ;; *) export PYTHONPATH=$PYTHONPATH:$WORK/site ;; esac
}
if [ -n "$MISSING" ]; then
    say "missing: $MISSING"
    if ls "$ROOT"/.gpu/wheels/*.whl > /dev/null 2>&1; then
        install_wheels absent
        "$PY" -c "import ablate.cli" >> "$LOG" 2>&1 || install_wheels all  # e.g. an image's typing_extensions too old
        MISSING=$(missing)
    else
        say "no .gpu/wheels here (run bench/gpu_check.sh --prepare where there is network, carry .gpu)"
    fi
fi
say "still missing: ${MISSING:-nothing}"
"$PY" -c "import ablate.cli" >> "$LOG" 2>&1 && say "ablate imports: yes" || say "ablate imports: NO (see log.txt)"
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

say "== CUDA-marked tests"
step "pytest -m cuda" 120 "$PY" -m pytest -q -m cuda -rs -p no:cacheprovider --continue-on-collection-errors tests/
grep -E "^(FAILED|ERROR)|[0-9]+ (passed|failed|skipped|error)" "$LOG" | tail -8 | sed 's/^/  /' | tee -a "$SUMMARY"

say "== bench/train_step.py: ablate vs timm ($( [ "$HAS_CUDA" = 1 ] && echo cuda || echo cpu))"
if [ "$HAS_CUDA" = 1 ]; then
    step "train_step bf16 224px" 75 "$PY" bench/train_step.py --device cuda --amp bf16 --size 224 --batch 128 \
        --optimizer adamw --warmup 5 --reps 20
    step "train_step fp32 224px" 45 "$PY" bench/train_step.py --device cuda --size 224 --batch 64 \
        --optimizer adamw --warmup 3 --reps 10
else
    step "train_step cpu (no GPU)" 60 "$PY" bench/train_step.py --models convnext_tiny --size 32 --batch 8 \
        --warmup 1 --reps 2
fi
grep -E "^(torch |resnet50|convnext_tiny)" "$LOG" | tail -6 | sed 's/^/  /' | tee -a "$SUMMARY"

say "== ablate bench: the references study, paper-style table ($( [ "$HAS_CUDA" = 1 ] && echo cuda || echo cpu))"
# each reference network alone at 224 px, batch 64, fp32 and the GPU's fast precision (AMP), inference and a
# training step, 5 interleaved rounds: the paper's Table 1 throughput column, measured here
if [ "$HAS_CUDA" = 1 ]; then
    BENCH_SET=(--device cuda --batch 64 --rounds 5 --seconds 0.5)
else
    BENCH_SET=(--device cpu --image-size 64 --batch 2 --rounds 1 --seconds 0.1 --mode infer --precision fp32)
    say "no GPU: a token CPU run at 64 px"
fi
step "ablate bench references" 150 "$PY" -m ablate bench studies/references.yaml --results "$WORK/results" \
    "${BENCH_SET[@]}"
awk '/^device: /{block=""} /^device: /,0{block=block $0 "\n"} END{printf "%s", block}' "$LOG" | sed 's/^/  /' \
    | tee -a "$SUMMARY"
[ -f "$WORK/results/references/bench.csv" ] && cp "$WORK/results/references/bench.csv" "$OUT_DIR/bench-references.csv"

say "== quick roadmap on the GPU (larger budget, time-boxed)"
DATA_SET=()
if [ -d /usr/share/datasets/fashion-mnist ]; then
    say "data: /usr/share/datasets/fashion-mnist"
elif [ -d "$ROOT/.gpu/fashion-mnist" ]; then
    DATA_SET=(--set "data.root=$ROOT/.gpu/fashion-mnist")
    say "data: .gpu/fashion-mnist"
else
    DATA_SET=(--set data.dataset=synthetic --set data.in_chans=1 --set data.num_classes=10)
    say "data: no Fashion-MNIST here: SYNTHETIC data (accuracies mean nothing, speeds do)"
fi
# every step once (seed 0) on 3.3x the images x 1.5x the epochs of the CPU proxy; trials that finish in the time box
ROADMAP_SET=(--set "seeds=[0]" --set recipe.epochs=${ROADMAP_EPOCHS:-6} --set data.train_subset=${ROADMAP_TRAIN:-20000}
             --set data.val_subset=5000)
DEVICE=cuda
[ "$HAS_CUDA" = 1 ] || { DEVICE=cpu; ROADMAP_SET=(--set "seeds=[0]" --set recipe.epochs=1 \
                          --set data.train_subset=256 --set data.val_subset=256); say "no GPU: a token CPU run"; }
say "settings: ${ROADMAP_SET[*]} ${DATA_SET[*]} --device $DEVICE"
step "ablate run roadmap-quick" $(( $(left) - 20 )) "$PY" -m ablate run studies/roadmap-quick.yaml --device "$DEVICE" \
    --results "$WORK/results" "${ROADMAP_SET[@]}" "${DATA_SET[@]}"
RESULTS=$(find "$WORK/results" -name results.csv 2>/dev/null | head -1)
if [ -n "$RESULTS" ]; then
    cp "$RESULTS" "$OUT_DIR/results.csv"
    "$PY" - "$RESULTS" << 'EOF' 2>&1 | tee -a "$SUMMARY"
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
done = df[df["status"] == "done"] if "status" in df else df
cols = [c for c in ("name", "top1", "ema_top1", "train_img_per_s", "infer_img_per_s", "peak_mem_mb", "wall_seconds")
        if c in df]
print(f"{len(done)} of {len(df)} trials done")
print(done[cols].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
EOF
else
    say "no results.csv (no trial finished)"
fi
grep -E "epoch [0-9]+/[0-9]+:" "$LOG" | tail -3 | sed 's/^/  last epoch lines: /' | tee -a "$SUMMARY"

say "== done in $(( $(date +%s) - START ))s (budget ${BUDGET}s); full output in log.txt"
rm -rf "$WORK"
exit 0
