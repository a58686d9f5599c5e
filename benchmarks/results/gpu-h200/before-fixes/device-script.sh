#!/bin/bash
# Device check A: the CUDA path's tests, and the benchmarks on the GPU (see .gpu/README in the session note).
# QUICK=1: tiny sizes (a dry run on a CPU).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
PY=${PY:-python3}
LOG=$OUT/a.log
exec > >(tee -a $LOG) 2>&1
T0=$(date +%s); stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
G=$PWD/.gpu; S=$G/site; mkdir -p $S $G/data $G/minilm-config
stamp setup
tar -xJf $G/faiss.tar.xz -C $S && tar -xJf $G/data.tar.xz -C $G/data && tar -xJf $G/minilm-config.tar.xz -C $G/minilm-config || exit 3
[ "${NO_WHEELS:-0}" = 1 ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $S $G/whl/*.whl || exit 4
export PYTHONPATH=$S:$PWD QA_DATA_DIR=$G/data XDG_CACHE_HOME=$G/cache
$PY $G/make_minilm.py $G/minilm-config $S ${MINILM_WEIGHTS:-random} || exit 5
cp -r qa/reader/default $G/keep-reader  # for check B, whose tree leaves the weights out
stamp env
{ nvidia-smi; $PY -c "import torch, transformers, sentence_transformers as st, faiss, bm25s; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-', transformers.__version__, st.__version__, faiss.__version__, bm25s.__version__)"; nproc; grep -m1 'model name' /proc/cpuinfo; } 2>&1 | tee $OUT/env.txt
if [ "${QUICK:-0}" = 1 ]; then P=200; R=1; SQ=16; AQ=16; LIM="--limit 50"; TESTS="tests/test_device.py"; else P=10000; R=2; SQ=256; AQ=1000; LIM=""; TESTS="tests/test_device.py tests/test_bert.py tests/test_dense.py tests/test_reader.py tests/test_shared_norm.py tests/test_train.py tests/test_pipeline.py tests/test_end_to_end.py tests/test_retriever.py tests/test_decode.py tests/test_merge.py tests/test_evaluate.py tests/test_index.py tests/test_cli.py tests/test_logging.py tests/test_index_updates.py tests/test_shards.py"; fi
stamp bench_index: embedding with random weights of all-MiniLM-L6-v2 shape, and the open-squad build
timeout 130 $PY benchmarks/bench_index.py --passages $P --rounds $R --build open-squad --out $OUT/index_gpu.json; echo "bench_index rc=$?"
stamp pytest on the GPU
timeout 130 $PY -m pytest -q -m "not integration" -p no:cacheprovider $TESTS > $OUT/pytest.log 2>&1; echo "pytest rc=$?"; tail -25 $OUT/pytest.log
stamp bench_reader
timeout 75 $PY benchmarks/bench_reader.py --device ${DEV:-cuda} --speed-questions $SQ --accuracy-questions $AQ --rounds $R --batch-sizes 16,64,256 --call 64 --out $OUT/reader_gpu.json; echo "bench_reader rc=$?"
stamp qa evaluate squad-gold
timeout 60 $PY -m qa evaluate squad-gold $LIM --json --out /tmp/eval-squad-gold > $OUT/squad_gold_gpu.json; echo "squad-gold rc=$?"; head -c 1500 $OUT/squad_gold_gpu.json; echo
stamp qa evaluate covid-qa --gold
timeout 35 $PY -m qa evaluate covid-qa --gold $LIM --json --out /tmp/eval-covid-gold > $OUT/covid_gold_gpu.json; echo "covid-qa --gold rc=$?"; head -c 800 $OUT/covid_gold_gpu.json; echo
stamp done
