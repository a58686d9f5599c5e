"""Write the pairs that calibrate static int8 (:mod:`qa.int8`, the reader and the passage encoder): ``--questions``
SQuAD v1.1 *training* questions drawn at random, each with its own paragraph, into
``qa/int8_calibration.json.gz`` (packaged with qa; no dev question, no answer).

Only the activations' ranges are taken from them. How many, and from which passages, barely
matters (2,000 SQuAD dev questions on their gold paragraphs, EM/F1 of the packaged reader,
2026-12-04, docs/READER.md "Static int8"): 128 to 640 pairs, gold paragraphs or the top 10
retrieved from open-squad, all within 0.2 EM of each other.

    python benchmarks/int8_calibration.py --questions 256
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
from pathlib import Path

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
from qa.corpora.squad import load_squad  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "qa" / "int8_calibration.json.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA / "squad" / "train-v1.1.json.gz"))
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    train = load_squad(args.train)
    paragraphs = {d.id: d.text for d in train.documents}
    examples = random.Random(args.seed).sample(train.examples, args.questions)
    content = {
        "source": f"SQuAD v1.1 train ({train.sha256}), {args.questions} questions drawn with seed {args.seed}, each with its "
                  "paragraph; CC BY-SA 4.0 (Rajpurkar et al. 2016, https://rajpurkar.github.io/SQuAD-explorer/)",
        "pairs": [[e.question, paragraphs[e.doc_id]] for e in examples],
    }
    raw = json.dumps(content, ensure_ascii=False, indent=0).encode()
    with open(args.out, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as packed:
        packed.write(raw)
    size = Path(args.out).stat().st_size
    print(f"{args.questions} pairs ({len(set(e.doc_id for e in examples))} paragraphs), {len(raw) / 1e3:.0f} kB of JSON, "
          f"{size / 1e3:.0f} kB packed, sha256 {hashlib.sha256(Path(args.out).read_bytes()).hexdigest()[:16]}: {args.out}")


if __name__ == "__main__":
    main()
