"""Resident memory and speed of `qa train reader` steps, with and without giving freed memory back.

glibc keeps much of what a training step frees (activations of a new shape at every batch) in its
heap, so a run's resident memory grows; ``qa.training.release_freed_memory`` (``malloc_trim``)
gives it back every ``qa.reader.train.TRIM_EVERY`` steps. Each interval here runs in its own
process: load the reader, featurise the first ``--limit`` questions, train ``--steps`` steps (as
`qa train reader` does, checkpoint at the end), sampling the process's RSS every 0.2 s.

    python benchmarks/bench_train_memory.py --steps 50 --trim-every 0,10 --rounds 1   # benchmarks/results/train_memory.json

Reported per interval (0: never): RSS when training starts, peak and at the end; seconds per step
(the run's own clock, steps only) and their ratio to never trimming in the same round; minor page
faults per step (what trimming costs: freed pages are faulted in again) and the seconds spent in
``malloc_trim`` itself. Rounds alternate the intervals, so that a neighbour's load falls on all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)

from qa.device import cpu_info  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(args, trim_every: int) -> dict:
    from qa import training
    from qa.reader import train as reader_train
    from qa.reader.train_config import TrainConfig

    reader_train.TRIM_EVERY = trim_every
    trims: list[float] = []
    release = training.release_freed_memory

    def timed_release() -> bool:
        t = time.perf_counter()
        try:
            return release()
        finally:
            trims.append(time.perf_counter() - t)

    training.release_freed_memory = timed_release
    samples: list[float] = []
    marks: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append(rss_mb())

    with tempfile.TemporaryDirectory() as work:
        config = TrainConfig(train=[args.train], base=args.base, output=str(Path(work) / "run"), max_length=args.max_length,
                             stride=args.stride, batch_size=args.batch_size, lr=3e-5, epochs=1.0, warmup=0.02,
                             freeze_embeddings=True, negative_fraction=0.05, checkpoint_every=10**6, limit=args.limit, seed=0)
        original_step = reader_train._step
        faults: list[int] = []

        def step(*a, **k):
            if "train_start" not in marks:
                marks["train_start"] = rss_mb()
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
            return original_step(*a, **k)

        reader_train._step = step
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        reader_train.train_reader(config, stop_after_steps=args.steps)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        end = rss_mb()
        stop.set()
        state = json.loads((Path(work) / "run" / "checkpoint" / reader_train.STATE).read_text())["state"]
    return {
        "trim_every": trim_every,
        "steps": state["step"],
        "seconds_per_step": round(state["seconds"] / state["step"], 3),
        "rss_train_start_mb": round(marks["train_start"]),
        "rss_peak_mb": round(max(samples + [end])),
        "rss_end_mb": round(end),
        "minor_faults_per_step": round((faults[-1] - faults[0]) / state["step"]),
        "trim_calls": len(trims),
        "trim_seconds": round(sum(trims), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA / "squad" / "train-v1.1.json.gz"))
    parser.add_argument("--base", default="qa/reader/default")
    parser.add_argument("--limit", type=int, default=3000, help="training questions featurised (enough for --steps batches)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--trim-every", default="0,10", help="comma-separated intervals in steps; 0: never")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_memory.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one interval, JSON on stdout
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args, args.one)))
        return
    if not Path(args.train).is_file():
        sys.exit(f"no training file at {args.train}: pass --train (SQuAD v1.1 train, see ../shared/data/README.md)")
    intervals = [int(x) for x in args.trim_every.split(",")]
    rows = []
    for round_number in range(args.rounds):
        order = intervals if round_number % 2 == 0 else intervals[::-1]
        got = {}
        for interval in order:
            cmd = [sys.executable, __file__, "--train", args.train, "--base", args.base, "--limit", str(args.limit),
                   "--steps", str(args.steps), "--max-length", str(args.max_length), "--stride", str(args.stride),
                   "--batch-size", str(args.batch_size), "--one", str(interval)]
            got[interval] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            print(f"round {round_number + 1}, trim every {interval}: {got[interval]}", file=sys.stderr)
        for interval in intervals:
            row = {"round": round_number + 1, **got[interval]}
            if 0 in got:
                row["time_vs_never"] = round(got[interval]["seconds_per_step"] / got[0]["seconds_per_step"], 3)
            rows.append(row)
    print(f"{'round':>5} {'trim every':>10} {'s/step':>7} {'vs never':>8} {'RSS start MB':>12} {'peak MB':>8} {'end MB':>7} "
          f"{'faults/step':>11} {'trim s':>6}")
    for r in rows:
        print(f"{r['round']:>5} {r['trim_every'] or 'never':>10} {r['seconds_per_step']:>7} {r.get('time_vs_never', ''):>8} "
              f"{r['rss_train_start_mb']:>12} {r['rss_peak_mb']:>8} {r['rss_end_mb']:>7} {r['minor_faults_per_step']:>11} "
              f"{r['trim_seconds']:>6}")
    summary = {}
    for interval in intervals:
        mine = [r for r in rows if r["trim_every"] == interval]
        summary[str(interval)] = {
            "median_seconds_per_step": statistics.median(r["seconds_per_step"] for r in mine),
            "median_peak_rss_mb": statistics.median(r["rss_peak_mb"] for r in mine),
            **({"median_time_vs_never": statistics.median(r["time_vs_never"] for r in mine)} if 0 in intervals else {}),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"train": args.train, "base": args.base, "limit": args.limit, "steps": args.steps,
                                          "max_length": args.max_length, "stride": args.stride, "batch_size": args.batch_size,
                                          "cpu": cpu_info().name, "results": rows, "summary": summary}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
