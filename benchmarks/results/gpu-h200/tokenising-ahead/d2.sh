#!/bin/bash
# Device check D, part 2 (session 50): the default reader carried, the open-squad index part 1 built
# (/tmp/kit, kept while the machine stayed warm): qa evaluate open-squad end to end on the GPU.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
PY=${PY:-python3}
exec > >(tee -a $OUT/d2.log) 2>&1
T0=$(date +%s); stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
K=${KIT:-/tmp/kit}
[ -d $K/idx/open-squad ] || { echo "no open-squad index in $K: part 1 did not run on this machine"; exit 9; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=$K/site:$PWD QA_DATA_DIR=$K/data XDG_CACHE_HOME=$K/cache
ls -la qa/reader/default | head -3
stamp "qa evaluate open-squad --limit ${L1:-500}"
timeout 120 $PY -m qa evaluate open-squad --index $K/idx/open-squad --limit ${L1:-500} --seed 0 --json --out /tmp/e1 > $OUT/open_squad_${L1:-500}_gpu.json; echo "rc=$?"; head -c 1200 $OUT/open_squad_${L1:-500}_gpu.json; echo
stamp "qa evaluate open-squad ${L2:-(all)}"
timeout ${T2:-420} $PY -m qa evaluate open-squad --index $K/idx/open-squad ${L2:+--limit $L2 --seed 0} --json --out /tmp/e2 > $OUT/open_squad_gpu.json; echo "rc=$?"; head -c 1500 $OUT/open_squad_gpu.json; echo
stamp done
