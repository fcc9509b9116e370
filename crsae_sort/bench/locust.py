"""The real locust tetrode of ``../shared/data`` sorted by crsae and by tridesclous2, unit by unit.

No ground truth here: tridesclous2, the best peer on the hybrid cases, is the reference. For each
tridesclous2 unit with at least ``min_spikes`` spikes: the crsae unit that agrees best with it
(SpikeInterface's ``compare_two_sorters``, agreement = matched / (n1 + n2 - matched)), the score, and
the second-best crsae unit (a crsae unit that takes two tridesclous2 units shows up twice). Writes the
table into docs/benchmarks.md between the LOCUST markers and docs/benchmarks_locust.json.

    python scripts/compare_locust.py                 # sort both, write the doc
    python scripts/compare_locust.py --no-doc --workdir /tmp/locust
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .docs import DOC, DOCS, commit, emit, hardware, write_block

MARKER = "LOCUST"
DOC_JSON = DOCS / "benchmarks_locust.json"
SORTERS = ("tridesclous2", "crsae")


@dataclass(frozen=True)
class UnitMatch:
    """One tridesclous2 unit and the crsae units that agree with it best."""

    tdc_unit: str
    tdc_spikes: int
    crsae_unit: str | None
    crsae_spikes: int
    agreement: float
    second_unit: str | None
    second_agreement: float


def agreement_table(reference, other, *, min_spikes: int = 50) -> list[UnitMatch]:
    """For each unit of ``reference`` with >= ``min_spikes`` spikes, its best and second-best unit of
    ``other`` by agreement score (``compare_two_sorters``, default 0.4-ms window)."""
    from spikeinterface.comparison import compare_two_sorters

    scores = compare_two_sorters(reference, other, sorting1_name="tridesclous2", sorting2_name="crsae").agreement_scores
    rows = []
    for u in reference.unit_ids:
        n = len(reference.get_unit_spike_train(u))
        if n < min_spikes:
            continue
        row = scores.loc[u].sort_values(ascending=False) if len(other.unit_ids) else None
        best = row.index[0] if row is not None and row.iloc[0] > 0 else None
        second = row.index[1] if row is not None and len(row) > 1 and row.iloc[1] > 0 else None
        rows.append(UnitMatch(str(u), n, None if best is None else str(best),
                              0 if best is None else len(other.get_unit_spike_train(best)),
                              float(row.iloc[0]) if best is not None else 0.0,
                              None if second is None else str(second), float(row.iloc[1]) if second is not None else 0.0))
    return sorted(rows, key=lambda r: -r.tdc_spikes)


def sort_locust(work: Path, threads: int, timeout_s: float, data: Path | None = None) -> dict:
    """Sort the locust tetrode with crsae and tridesclous2 (each through ``run_sorter`` in its own process,
    as in the sorter comparison); returns sorter -> result row (with ``sorting_folder`` when ok)."""
    from .hybrid import open_source
    from .sorters import run_sorter_in_child

    rec_folder = work / "locust_recording"
    if not (rec_folder / "binary.json").exists():
        open_source("locust", data).save(folder=rec_folder, overwrite=True, n_jobs=1, progress_bar=False)
    results = {}
    for sorter in SORTERS:
        out = work / sorter
        res = run_sorter_in_child(sorter, rec_folder, out, threads, timeout_s)
        if res["status"] == "ok":
            res["sorting_folder"] = str(out.parent / (out.name + "_sorting"))
        emit(f"locust {sorter:13s} " + (f"{res['wall_s']:.1f} s" if res["status"] == "ok" else f"failed: {res['reason']}"),
             flush=True)
        results[sorter] = res
    return results


def markdown(report: dict) -> list[str]:
    """The LOCUST block: how it was run, the unit counts and the agreement table."""
    lines = [f"Commit {report['commit']}, {report['date']}. Hardware: {report['hardware']}. Command: "
             f"`{report['command']}`. Both sorters through `run_sorter` with their defaults (as in the sorter "
             f"comparison), {report['threads']} threads.", ""]
    res = report["results"]
    for sorter in SORTERS:
        r = res[sorter]
        lines.append(f"- {sorter} {r.get('version') or ''}: " + (
            f"{r['n_units']} units, {r['wall_s']:.1f} s" if r["status"] == "ok" else f"failed: {r['reason']}"))
    if not report.get("table"):
        return lines
    lines += ["", f"Each tridesclous2 unit with >= {report['min_spikes']} spikes, the crsae unit agreeing best with "
              "it and the second best (agreement = matched / (n1 + n2 - matched), `compare_two_sorters`):", "",
              "| tridesclous2 unit | spikes | best crsae unit | its spikes | agreement | second crsae unit | agreement |",
              "|---|---|---|---|---|---|---|"]
    for r in report["table"]:
        lines.append(f"| {r['tdc_unit']} | {r['tdc_spikes']} | {r['crsae_unit'] or '-'} | {r['crsae_spikes']} | "
                     f"{r['agreement']:.2f} | {r['second_unit'] or '-'} | {r['second_agreement']:.2f} |")
    found = sum(r["agreement"] >= 0.8 for r in report["table"])
    lines += ["", f"crsae matches {found} of these {len(report['table'])} tridesclous2 units with agreement >= 0.8."]
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="the shared data folder (default: ../shared/data)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument("--min-spikes", type=int, default=50, help="tridesclous2 units with fewer spikes are left out")
    ap.add_argument("--workdir", type=Path, default=None, help="recording and sorter folders (default: a temp dir)")
    ap.add_argument("--no-doc", action="store_true", help="print the table only; leave docs/ alone")
    args = ap.parse_args(argv)
    import spikeinterface as si

    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_locust_"))
    work.mkdir(parents=True, exist_ok=True)
    report = dict(command="python scripts/compare_locust.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  commit=commit(), date=time.strftime("%Y-%m-%d"), hardware=hardware(), threads=args.threads,
                  min_spikes=args.min_spikes)
    results = sort_locust(work, args.threads, args.timeout_s, args.data)
    for r in results.values():
        if r["status"] == "ok":
            r["n_units"] = len(si.load(r["sorting_folder"]).unit_ids)
    report["results"] = results
    if all(r["status"] == "ok" for r in results.values()):
        tdc, crsae = (si.load(results[s]["sorting_folder"]) for s in SORTERS)
        report["table"] = [asdict(m) for m in agreement_table(tdc, crsae, min_spikes=args.min_spikes)]
    text = "\n".join(markdown(report))
    emit(text)
    (work / "benchmarks_locust.json").write_text(json.dumps(report, indent=1))
    if not args.no_doc:
        DOC_JSON.write_text(json.dumps(report, indent=1))
        section = ("## Locust tetrode: crsae against tridesclous2\n\n`python scripts/compare_locust.py` sorts the real "
                   "locust tetrode of `../shared/data` (28.8 s, 4 channels, 15 kHz, no ground truth) with crsae and "
                   "with tridesclous2 and compares them unit by unit (`crsae_sort.bench.locust`).")
        write_block(DOC, MARKER, text, section=section)
    return report


if __name__ == "__main__":
    main()
