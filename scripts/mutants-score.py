"""The score of a cargo-mutants run, from its mutants.out directory (`make mutants`).

usage: python3 mutants-score.py MUTANTS_OUT

Prints one line (or that no mutant was tested, as when a diff changes none): the share of viable
mutants detected (caught, or made the tests hang until the timeout), the missed, the unviable
(they do not build) and how long the run took; then each missed or timed-out mutant. Exits 2
while a mutant was missed.
"""

import datetime
import json
import pathlib
import sys


def seconds_between(start, end):
    """Seconds from one RFC 3339 time of cargo-mutants' to another (nanoseconds dropped)."""
    def parse(text):
        head, _, _ = text.rstrip("Z").partition(".")
        return datetime.datetime.fromisoformat(head)
    return (parse(end) - parse(start)).total_seconds()


def main():
    out = pathlib.Path(sys.argv[1])
    if not (out / "outcomes.json").exists():
        print("mutation score: no mutant was tested (none in what changed)")
        return
    run = json.loads((out / "outcomes.json").read_text())
    caught, missed, timeout = run["caught"], run["missed"], run["timeout"]
    viable = caught + missed + timeout
    percent = f"{100 * (caught + timeout) / viable:.1f}%" if viable else "-"
    took = ""
    if run.get("end_time"):
        minutes, secs = divmod(int(seconds_between(run["start_time"], run["end_time"])), 60)
        took = f" in {minutes} min {secs} s"
    print(
        f"mutation score: {percent} of {viable} viable mutants detected ({caught} caught, "
        f"{timeout} timeouts: tests that hung); {missed} missed; {run['unviable']} unviable; "
        f"{run['total_mutants']} mutants{took}"
    )
    for name in ("missed.txt", "timeout.txt"):
        path = out / name
        for line in path.read_text().splitlines() if path.exists() else []:
            print(f"  {name.removesuffix('.txt')}: {line}")
    if missed:
        sys.exit(2)


main()
