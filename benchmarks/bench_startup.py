"""Start-up of a one-shot `qa ask`: the whole process, run again and again (median of --runs).

Each round runs, in turn: `python -c "import torch"` (the floor any torch program pays),
`qa --help`, and `qa ask QUESTION --index INDEX --json` for this checkout and for every
--compare DIR (an older checkout, e.g. `git worktree add /tmp/before <commit>`, run with its
sources first on PYTHONPATH), so that all of them see the same host in the same run; with
--server URL, `qa ask --server URL` too (start `qa serve --index INDEX` first); with --corpus DIR,
`qa index DIR` into a new folder (a small corpus: what loading the embedding model costs a build)
for this checkout and every --compare DIR. Each process's peak RSS is recorded beside its time.

    python benchmarks/bench_startup.py --index ~/.cache/qa/indexes/open-squad-* [--compare /tmp/before] [--corpus corpus]

Prints a table and writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.device import cpu_name  # noqa: E402

QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"


def timed(command: list[str], source: Path | None = None) -> tuple[float, float]:
    """Seconds the command took and its peak resident memory in MB."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=source or ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="a built index (e.g. the cached open-squad one)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", action="append", default=[], help="another checkout's folder, measured alike")
    parser.add_argument("--server", help="also time `qa ask --server URL` against a running `qa serve` of the same index")
    parser.add_argument("--corpus", help="also time `qa index CORPUS` into a new folder, for each checkout")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    args = parser.parse_args()
    python = sys.executable
    ask = ["-m", "qa", "ask", QUESTION, "--index", str(Path(args.index).resolve()), "--json"]
    cases = {
        "import torch": ([python, "-c", "import torch"], None),
        "qa --help": ([python, "-m", "qa", "--help"], ROOT),
        "qa ask (this checkout)": ([python, *ask], ROOT),
    }
    if args.server:
        cases["qa ask --server"] = ([python, "-m", "qa", "ask", QUESTION, "--server", args.server, "--json"], ROOT)
    for folder in args.compare:
        cases[f"qa ask ({folder})"] = ([python, *ask], Path(folder).resolve())
    scratch = Path(tempfile.mkdtemp(prefix="bench-startup-"))  # the indexes --corpus builds
    if args.corpus:
        corpus = str(Path(args.corpus).resolve())
        for n, (name, source) in enumerate([("this checkout", ROOT), *((f, Path(f).resolve()) for f in args.compare)]):
            cases[f"qa index ({name})"] = ([python, "-m", "qa", "index", corpus, "--index", str(scratch / str(n))], source)
    try:
        for command, source in cases.values():  # warm the page cache
            timed(command, source)
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        peak_mb: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.runs):
            for name, (command, source) in cases.items():
                took, peak = timed(command, source)
                seconds[name].append(took)
                peak_mb[name].append(peak)
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()), flush=True)
    finally:
        shutil.rmtree(scratch)
    rows = [
        {"case": name, "median_s": round(statistics.median(s), 2), "min_s": round(min(s), 2), "max_s": round(max(s), 2),
         "peak_rss_mb_median": round(statistics.median(peak_mb[name]))}
        for name, s in seconds.items()
    ]
    print(f"\n{'case':<45} {'median s':>9} {'min':>6} {'max':>6} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['case']:<45} {row['median_s']:>9.2f} {row['min_s']:>6.2f} {row['max_s']:>6.2f} {row['peak_rss_mb_median']:>12}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "runs": args.runs, "question": QUESTION,
                                          "index": str(args.index), "corpus": args.corpus, "rows": rows, "seconds": seconds,
                                          "peak_rss_mb": peak_mb}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
