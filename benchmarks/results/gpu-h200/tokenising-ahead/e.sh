#!/bin/bash
# Device check E (session 50): after the CUDA embedding change (qa.bert, tokenised ahead), the GPU test
# selection of session 49 again; then profiles of the open-squad build and of qa evaluate open-squad on
# 2,000 questions, to see where the host's time goes (all-MiniLM-L6-v2's shape with random weights:
# timings only, its retrieval and answers mean nothing).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
PY=${PY:-python3}
exec > >(tee -a $OUT/e.log) 2>&1
T0=$(date +%s); stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
G=$PWD/.gpu; K=${KIT:-/tmp/kitE}; S=$K/site; rm -rf $K; mkdir -p $S $K/data $K/idx
stamp setup
tar -xJf $G/faiss.tar.xz -C $S && tar -xJf $G/tokenizers.tar.xz -C $S && tar -xJf $G/data.tar.xz -C $K/data || exit 3
[ "${NO_WHEELS:-0}" = 1 ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $S $G/whl/*.whl || exit 4
export PYTHONPATH=$S:$PWD QA_DATA_DIR=$K/data XDG_CACHE_HOME=$K/cache
$PY $G/make_minilm.py $G/minilm-config $S || exit 5   # make_minilm_random.py in this folder
if [ "${QUICK:-0}" = 1 ]; then TESTS="tests/test_device.py"; LIM=100; else LIM=2000; TESTS="tests/test_device.py tests/test_bert.py tests/test_dense.py tests/test_reader.py tests/test_shared_norm.py tests/test_train.py tests/test_pipeline.py tests/test_end_to_end.py tests/test_retriever.py tests/test_decode.py tests/test_merge.py tests/test_evaluate.py tests/test_index.py tests/test_cli.py tests/test_logging.py tests/test_index_updates.py tests/test_shards.py"; fi
stamp pytest on the GPU
timeout 120 $PY -m pytest -q -m "not integration" -p no:cacheprovider $TESTS \
  --deselect tests/test_index_updates.py::test_a_malformed_corpus_is_indexed_with_counts_and_never_half_written > $OUT/pytest.log 2>&1
echo "pytest rc=$? (deselected: the malformed-corpus test, which needs pypdfium2, not carried)"; tail -12 $OUT/pytest.log
stamp profile: the open-squad build
timeout 75 $PY -m cProfile -o $OUT/build.prof benchmarks/bench_index.py --one open-squad --one-out $K/idx/open-squad; echo "build rc=$?"
$PY -c "import pstats; pstats.Stats('$OUT/build.prof').sort_stats('cumulative').print_stats(45)" > $OUT/build_profile.txt 2>&1; head -c 6000 $OUT/build_profile.txt | tail -c 4500
stamp profile: qa evaluate open-squad --limit $LIM
timeout 70 $PY -m cProfile -o $OUT/eval.prof -m qa evaluate open-squad --index $K/idx/open-squad --limit $LIM --seed 0 --json --out /tmp/e3 > $OUT/eval.json; echo "eval rc=$?"; head -c 600 $OUT/eval.json; echo
$PY -c "import pstats; pstats.Stats('$OUT/eval.prof').sort_stats('cumulative').print_stats(45)" > $OUT/eval_profile.txt 2>&1; head -c 6000 $OUT/eval_profile.txt | tail -c 4500
stamp done
