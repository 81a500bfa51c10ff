"""Summarise `mutmut results --all true` per module, and check tests/mutation-survivors.md.

Reads the results on stdin (lines `    otactl.pki.x_make_crl__mutmut_3: survived`). Prints, per
module: mutants generated, killed (by a test, a timeout or the type check), survived, and
those no test reaches. Exits 1 when a mutant that was not killed is missing from
tests/mutation-survivors.md, which must say for each why it is equivalent (or why no fast
test reaches it)."""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check", "segfault"}
LISTED = Path(__file__).resolve().parent.parent / "tests" / "mutation-survivors.md"


def main() -> int:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    not_killed: list[str] = []
    for line in sys.stdin:
        m = re.fullmatch(r"\s*(otactl\.(\w+)\.\S+): (.+)", line.rstrip("\n"))
        if not m:
            continue
        name, module, status = m.groups()
        counts = by_module[module]
        counts["generated"] += 1
        counts["killed" if status in KILLED else status] += 1
        if status not in KILLED:
            not_killed.append(name)
    print(f"{'module':<16} {'generated':>9} {'killed':>7} {'survived':>8} {'no tests':>8}")
    total: Counter[str] = Counter()
    for module, counts in sorted(by_module.items()):
        total += counts
        print(
            f"{module:<16} {counts['generated']:>9} {counts['killed']:>7} "
            f"{counts['survived']:>8} {counts['no tests']:>8}"
        )
    print(
        f"{'total':<16} {total['generated']:>9} {total['killed']:>7} "
        f"{total['survived']:>8} {total['no tests']:>8}"
    )
    other = {
        k: v for k, v in total.items() if k not in {"generated", "killed", "survived", "no tests"}
    }
    if other:
        print(f"other outcomes: {dict(other)}")
    text = LISTED.read_text() if LISTED.exists() else ""
    # Names under "## Not reviewed" are listed but not explained yet: they still count.
    explained = text.split("\n## Not reviewed")[0]
    listed = set(re.findall(r"`(otactl\.\w+\.\S+?)`", explained))
    missing = [n for n in not_killed if n not in listed]
    if missing:
        print(f"\n{len(missing)} mutants not killed and not explained in {LISTED.name}:")
        for name in missing:
            print(f"  {name}")
        return 1
    print(f"\nevery mutant not killed is explained in {LISTED.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
