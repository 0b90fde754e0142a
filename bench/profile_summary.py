"""Summarise a py-spy `--format raw` (collapsed stacks) file: top functions by self
and by inclusive samples. `python -m bench.profile_summary FILE [--top N] [--thread NAME]`."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_ADDRESS = re.compile(r"^0x[0-9a-f]+ ")


def summarise(path: Path, *, thread: str | None = None) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if thread is not None and thread not in frames[0]:
            continue
        count = int(count_text)
        total += count
        names = [_ADDRESS.sub("", f) for f in frames[1:]] or ["<idle>"]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", help="only stacks whose thread label contains this")
    args = parser.parse_args()
    total, own, inclusive = summarise(args.path, thread=args.thread)
    print(f"{total} samples")
    print("-- self --")
    for name, count in own.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {name}")
    print("-- inclusive --")
    for name, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
