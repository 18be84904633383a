"""The mutation run's counts per file, from `mutmut results --all true` on stdin (`make
mutation` pipes it here): killed, timeout, survived, no tests, and the survival rate, the
share of mutants no test noticed ((survived + no tests) / all). Reads text only: no `nin`."""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"^\s*nin\.(\w+)\.\S+__mutmut_\d+: (.+)$")
COLUMNS = ["killed", "timeout", "survived", "no tests"]


def summary(lines) -> str:
    counts: dict[str, Counter] = defaultdict(Counter)
    for line in lines:
        match = LINE.match(line)
        if match:
            counts[f"nin/{match[1]}.py"][match[2].strip()] += 1
    counts["all"] = sum(counts.values(), Counter())
    rows = [f"{'file':<18}{'mutants':>8}" + "".join(f"{c:>10}" for c in COLUMNS) + "  survival"]
    for name, c in counts.items():
        total = sum(c.values())
        other = total - sum(c[k] for k in COLUMNS)  # suspicious, segfault: none seen so far
        rate = (c["survived"] + c["no tests"]) / total if total else 0.0
        rows.append(
            f"{name:<18}{total:>8}"
            + "".join(f"{c[k]:>10}" for k in COLUMNS)
            + f"  {rate:8.1%}"
            + (f"  ({other} other)" if other else "")
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(summary(sys.stdin))
