#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check that iopool-mempool-perf's ratios are the medians of the paired
per-repetition ratios, in its JSON and in its printed table.

usage: mp_ratios_check.py BINARY [ARGS...]

Runs BINARY ARGS --json TMP, then recomputes every cell's iopool/dpdk,
bounded/dpdk and bounded/iopool ratio from the repetitions' rates in the
JSON (repetition i of one allocator against repetition i of the other)
and compares it with the JSON's "ratios" and with the table's two ratio
columns. Exit 0 when all agree, 1 otherwise, 77 (skipped) when a cell
lacks an allocator's rates (DPDK not built in).
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

PAIRS = (("iopool", "dpdk"), ("iopool-bounded", "dpdk"), ("iopool-bounded", "iopool"))


def paired(cell, a, b):
    ra, rb = cell[a]["reps"], cell[b]["reps"]
    n = min(len(ra), len(rb))
    return statistics.median(ra[i] / rb[i] for i in range(n))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "mp.json")
        out = subprocess.run(sys.argv[1:] + ["--json", path], stdout=subprocess.PIPE, text=True, check=True).stdout
        with open(path) as f:
            data = json.load(f)
    # The table's rows: "KEEP GET PUT KIND  dpdk iopool bounded iop/dpdk bnd/iop ...", per core count.
    rows = {}
    cores = 0
    for line in out.splitlines():
        m = re.match(r"^(\d+) cores?: objects got per second", line)
        if m:
            cores = int(m.group(1))
        m = re.match(r"^(\d+) (\d+) (\d+) (var|const)\s+\S+\s+\S+\s+\S+\s+([0-9.]+)x\s+([0-9.]+)x", line)
        if m:
            rows[(cores,) + tuple(int(x) for x in m.groups()[:3]) + (m.group(4) == "const",)] = (
                float(m.group(5)), float(m.group(6)))
    bad = checked = 0
    for cell in data["cells"]:
        if any("reps" not in cell[a] for a in ("dpdk", "iopool", "iopool-bounded")):
            print("skipped: a cell without an allocator's rates (DPDK not built in?)")
            return 77
        key = (cell["cores"], cell["n_keep"], cell["n_get_bulk"], cell["n_put_bulk"], cell["const"])
        for a, b in PAIRS:
            want = paired(cell, a, b)
            got = cell["ratios"][f"{a}/{b}"]
            checked += 1
            if abs(got - want) > 5e-4:
                print(f"{key}: JSON {a}/{b} {got}, the median of the paired repetitions is {want:.4f}")
                bad += 1
        if key not in rows:
            print(f"{key}: no row in the table")
            bad += 1
            continue
        for col, (a, b) in zip(rows[key], (PAIRS[0], PAIRS[2])):
            checked += 1
            if abs(col - round(paired(cell, a, b), 2)) > 0.0051:
                print(f"{key}: table {a}/{b} {col:.2f}x, the median of the paired repetitions is "
                      f"{paired(cell, a, b):.4f}")
                bad += 1
    print(f"{checked} ratios checked over {len(data['cells'])} cells, {bad} wrong")
    return 1 if bad or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
