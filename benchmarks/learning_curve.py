"""Dev EM/F1 of a reader against its training steps: the learning curve that decides when longer
training stops paying (issue 17).

    python benchmarks/learning_curve.py --checkpoints /work/runs/reader17/curve --offset 2287 \
        --base qa/reader/default --questions 2000 --out benchmarks/results/learning_curve.json \
        --plot docs/results/learning-curve.png

``--checkpoints`` holds one model folder per step, named ``step-N`` (copies of a run's
``checkpoint`` folder without its optimizer state). ``--base`` is the model the run started from,
plotted at step 0 of the run; ``--offset`` is the steps the base had already seen, so the x axis
counts all training steps. Each model reads the same ``--questions`` SQuAD v1.1 dev questions (drawn
with seed 1, as ``qa train reader --eval-limit`` draws them) on their gold paragraphs, as
``qa evaluate squad-gold`` does. A model already measured in ``--out`` is not measured again, so
the script can be rerun as a run goes on.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)

from qa.device import cpu_info
from qa.eval import evaluate, load_question_set
from qa.reader import Reader


def steps_of(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"step-(\d+)", p.name)) and p.is_dir()]
    return sorted(found)


def save(done: dict, args) -> None:
    done["points"].sort(key=lambda p: p["step"])
    done.update(questions=args.questions, seed=1, cpu=cpu_info().name, offset=args.offset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(done, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--base", type=Path, help="the run's starting model, measured as step 0 of the run")
    parser.add_argument("--offset", type=int, default=0, help="training steps the base had already seen")
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learning_curve.json")
    parser.add_argument("--plot", type=Path, help="PNG of F1 and EM against steps")
    parser.add_argument("--every", type=int, default=1, help="measure only the checkpoints of steps divisible by this (and the last)")
    args = parser.parse_args()
    squad = load_question_set("squad-gold", data=DATA)
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"points": []}
    measured = {p["model"] for p in done["points"]}
    found = steps_of(args.checkpoints)
    found = [(s, p) for i, (s, p) in enumerate(found) if s % args.every == 0 or i == len(found) - 1]
    models = ([(0, args.base)] if args.base else []) + found
    for step, model in models:
        if str(model) in measured:
            continue
        started = time.perf_counter()
        result = evaluate(squad, Reader(model), limit=args.questions, seed=1).results[0]
        point = {
            "model": str(model),
            "run_step": step,
            "step": args.offset + step,
            "exact_match": round(result.metrics["exact_match"], 2),
            "f1": round(result.metrics["f1"], 2),
            "seconds": round(time.perf_counter() - started, 1),
        }
        done["points"].append(point)
        print(f"step {point['step']:>6}: EM {point['exact_match']:6.2f}  F1 {point['f1']:6.2f}  ({point['seconds']} s)", file=sys.stderr)
        save(done, args)  # after every point: an interrupted run keeps what it measured
    save(done, args)
    print("| step | EM | F1 |\n|---|---|---|")
    for p in done["points"]:
        print(f"| {p['step']} | {p['exact_match']:.2f} | {p['f1']:.2f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [p["step"] for p in done["points"]]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [p["f1"] for p in done["points"]], marker="o", label="F1")
        ax.plot(steps, [p["exact_match"] for p in done["points"]], marker="o", label="EM")
        ax.set_xlabel("training steps of 32 features")
        ax.set_ylabel("score")
        ax.set_title(f"SQuAD v1.1 dev, {args.questions} questions on their gold paragraphs", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
