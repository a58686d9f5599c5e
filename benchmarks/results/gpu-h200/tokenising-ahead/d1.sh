#!/bin/bash
# Device check D, part 1 (session 50): the real all-MiniLM-L6-v2 (weights rounded to fp16 to fit the
# carry limit, widened back to fp32), no reader in the tree. The embedding paths on the GPU (qa.bert with
# tokenising threads, the sentence-transformers path before, fp16 weights) and their agreement with fp32,
# with TOKENIZERS_PARALLELISM false and true; bench_index with the open-squad build, kept in /tmp/kit for part 2.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
PY=${PY:-python3}
exec > >(tee -a $OUT/d1.log) 2>&1
T0=$(date +%s); stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
G=$PWD/.gpu; K=${KIT:-/tmp/kit}; S=$K/site; rm -rf $K; mkdir -p $S $K/data $K/minilm
stamp setup
tar -xJf $G/faiss.tar.xz -C $S && tar -xJf $G/tokenizers.tar.xz -C $S && tar -xJf $G/data.tar.xz -C $K/data && tar -xJf $G/minilm.tar.xz -C $K/minilm || exit 3
[ "${NO_WHEELS:-0}" = 1 ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $S $G/whl/*.whl || exit 4
export PYTHONPATH=$S:$PWD QA_DATA_DIR=$K/data XDG_CACHE_HOME=$K/cache
$PY $G/make_minilm.py $K/minilm $S || exit 5
rm -rf $K/minilm; cp $G/d2.sh $K/
{ nvidia-smi -L; nproc; grep -m1 'model name' /proc/cpuinfo; $PY -c "import sys, torch, transformers, sentence_transformers as st, tokenizers, faiss, bm25s; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else '-', 'transformers', transformers.__version__, 'sentence-transformers', st.__version__, 'tokenizers', tokenizers.__version__, 'faiss', faiss.__version__, 'bm25s', bm25s.__version__)"; } 2>&1 | tee $OUT/env.txt
if [ "${QUICK:-0}" = 1 ]; then P=300; B=16; IP=200; BUILD=""; else P=10000; B=256; IP=10000; BUILD=open-squad; fi
stamp pytest tests/test_bert.py tests/test_dense.py
timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_bert.py tests/test_dense.py > $OUT/pytest.log 2>&1; echo "pytest rc=$?"; tail -6 $OUT/pytest.log
for par in false true; do
  stamp "embedding_stages.py TOKENIZERS_PARALLELISM=$par"
  TOKENIZERS_PARALLELISM=$par timeout 90 $PY benchmarks/embedding_stages.py --passages $P --batch $B --out $OUT/stages_$par.json; echo "stages rc=$?"
done
stamp bench_index: $IP passages, one round, and the open-squad build kept for part 2
timeout 170 $PY benchmarks/bench_index.py --passages $IP --rounds 1 --build "$BUILD" --keep $K/idx --out $OUT/index_gpu.json; echo "bench_index rc=$?"
ls $K/idx 2>&1
stamp done
