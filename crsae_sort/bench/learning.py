"""The learning benchmark: what training adds to the initial dictionary, on generated and hybrid ground truth.

Each case is preprocessed and clustered once (its initial dictionary); every row then starts the model
from one dictionary, trains it or not, reads the whole recording out and scores it:

* ``clean``: the initial dictionary as clustered;
* ``noisy``: each of its atoms plus Gaussian noise of ``NOISE_FRACTION`` x the atom's norm, renormalised;
* ``random``: as many random unit-norm atoms (each atom keeps its cluster's reference amplitude, which
  gates the read-out), trained with ``RANDOM_TRAIN`` (a faster rate, more epochs; not tuned).

"Trained: no" is ``max_epochs=0``: :func:`crsae_sort.train.train` runs no step and keeps the starting
model. Growth is off in every row (``grow_rounds=0``), so the table isolates learning. Accuracy is the
mean over ground-truth units of SNR >= 5 (hybrid cases: the injected units only, scored with
``exhaustive_gt=False``); cosine is each such unit's best-lag cosine to its closest atom
(:func:`.init.match_units`, truth templates cut from the preprocessed recording by :func:`.init.gt_templates`).
Training seconds are the wall time of window sampling plus training (``pipeline._build_and_train``).

    python scripts/benchmark_learning.py                    # the four cases, the LEARNING block
    python scripts/benchmark_learning.py --cases demo --no-doc
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .docs import DOC, commit, emit, hardware, write_block

CASES = ("demo", "tetrode", "hybrid_locust_a", "hybrid_locust_b")
#: (start, trained) in the order of the table
ROWS = (("clean", False), ("clean", True), ("noisy", False), ("noisy", True), ("random", False), ("random", True))
NOISE_FRACTION = 0.3
RANDOM_TRAIN = {"learning_rate": 1e-2, "max_epochs": 10, "patience": 20}
SNR_MIN = 5.0
ROWS_FILE = "rows.jsonl"  # in the workdir: every finished row, so that the doc can be written part-way
SECTION = ("## Learning: what training adds\n\n"
           "`scripts/benchmark_learning.py` (`crsae_sort/bench/learning.py`, whose docstring defines the "
           "rows and columns): the initial dictionary used as it is, then trained; the same with 30 % noise "
           "added to every atom; random atoms. Growth is off in every row (`grow_rounds=0`), so the rows "
           "differ only by the starting dictionary and by training.")


@dataclasses.dataclass
class Case:
    """A ground-truth case: the recording, its ground-truth sorting, each unit's SNR, and how to score."""

    name: str
    recording: object
    gt_sorting: object
    snrs: dict            # unit id (str) -> SNR
    exhaustive_gt: bool   # False for hybrid cases: the recording's own units are not in the ground truth


@dataclasses.dataclass
class Prepared:
    """A case preprocessed and clustered once, with the truth templates its rows are compared to."""

    case: Case
    pre: object            # crsae_sort.preprocess.Preprocessed
    init: object           # crsae_sort.init_dictionary.InitialDictionary
    truth: np.ndarray      # (n_units, K, n_channels) ground-truth templates in model space
    strong: np.ndarray     # (n_units,) bool: SNR >= SNR_MIN


def load_case(name: str, duration_s: float = 30.0) -> Case:
    """``demo`` (the demo's tetrode), a generated case of the sorter comparison, or a hybrid case."""
    from ..demo import ground_truth_tetrode, unit_snrs

    if name.startswith("hybrid"):
        from .hybrid import make_hybrid

        built = make_hybrid(name)
        return Case(name, built.recording, built.gt_sorting, dict(built.snrs), exhaustive_gt=False)
    if name == "demo":
        rec, gt = ground_truth_tetrode(duration_s)
    else:
        from .sorters_cases import generated

        rec, gt = generated(name, duration_s)
    return Case(name, rec, gt, {str(u): v for u, v in unit_snrs(rec, gt).items()}, exhaustive_gt=True)


def prepare(case: Case, seed: int, scratch: Path | None = None, overrides: dict | None = None) -> Prepared:
    """Preprocess ``case`` and cluster its initial dictionary (default parameters, ``grow_rounds=0``)."""
    from ..init_dictionary import initial_dictionary
    from ..preprocess import preprocess
    from .init import gt_templates

    params = _params(seed, overrides)
    pre = preprocess(case.recording, params.preprocess, seed, scratch)
    init = initial_dictionary(pre.recording, params.init, seed)
    k = init.dictionary.shape[-1]
    truth = gt_templates(pre.recording, case.gt_sorting, pre.decimation, init.n_before, k - init.n_before)
    strong = np.array([case.snrs[str(u)] >= SNR_MIN for u in case.gt_sorting.unit_ids])
    return Prepared(case, pre, init, truth, strong)


def start_dictionary(init, start: str, seed: int):
    """The :class:`~crsae_sort.init_dictionary.InitialDictionary` a row starts from (see the module docstring)."""
    d = init.dictionary.astype(np.float64)
    rng = np.random.default_rng(seed)
    if start == "clean":
        return init
    if start == "noisy":
        noise = rng.standard_normal(d.shape)
        noise *= (NOISE_FRACTION * _norms(d) / _norms(noise))[:, None, None]
        d = d + noise
    elif start == "random":
        d = rng.standard_normal(d.shape)
    else:
        raise ValueError(f"unknown start {start!r}: one of clean, noisy, random")
    return dataclasses.replace(init, dictionary=(d / _norms(d)[:, None, None]).astype(np.float32))


def run_row(prep: Prepared, start: str, trained: bool, seed: int = 0, overrides: dict | None = None) -> dict:
    """One row: the model from ``start``, trained or not, read out and scored (fields: module docstring)."""
    import torch
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from ..infer import detect_spikes
    from ..pipeline import _build_and_train
    from ..postprocess import build_result
    from .init import match_units

    train = dict(RANDOM_TRAIN) if start == "random" and trained else {}
    train.update(overrides or {})
    if not trained:
        train["max_epochs"] = 0
    params = _params(seed, train)
    init = start_dictionary(prep.init, start, seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model, training = _build_and_train(prep.pre, init, params, torch.device("cpu"), False, None)
    train_s = time.perf_counter() - t0
    cos_start = match_units(init.dictionary, prep.truth)[prep.strong]
    cos = match_units(model.dense_dictionary().cpu().numpy(), prep.truth)[prep.strong]
    spikes = detect_spikes(model, prep.pre.recording, params.inference)
    result = build_result(prep.case.recording, prep.pre, model, spikes, params, training, torch.device("cpu"))
    gt = prep.case.gt_sorting
    perf = compare_sorter_to_ground_truth(gt, result.sorting, exhaustive_gt=prep.case.exhaustive_gt).get_performance()
    acc = np.array([float(perf.loc[u, "accuracy"]) for u in gt.unit_ids])
    lam = model.lam.detach().cpu().numpy()
    return dict(case=prep.case.name, start=start, trained=trained, steps=training.n_steps,
                step_kept=training.best_step, accuracy=float(acc[prep.strong].mean()),
                n_units_snr5=int(prep.strong.sum()), cosine_start=float(cos_start.mean()),
                cosine_mean=float(cos.mean()), cosine_min=float(cos.min()), lambda_min=float(lam.min()),
                lambda_max=float(lam.max()), train_s=train_s, n_atoms=int(len(lam)),
                n_units_out=len(result.sorting.unit_ids),
                accuracy_per_unit={str(u): round(float(a), 4) for u, a in zip(gt.unit_ids, acc)},
                snrs={str(u): round(prep.case.snrs[str(u)], 2) for u in gt.unit_ids})


def markdown(report: dict, rows: list[dict]) -> str:
    """The LEARNING block: command, commit, hardware, then one line per (case, row); rows not run are said."""
    lines = [f"`{report['command']}` — code of commit {report['commit']}; {report['hardware']}; load average "
             f"{report['load_before']:.1f} before, {report['load_after']:.1f} after; "
             f"{report['total_s'] / 60:.0f} min in all. Seed {report['seed']}; {report['duration_s']:g}-s generated "
             "cases (hybrid: the recording's own length). `grow_rounds=0` in every row.", "",
             "| case | start | trained | steps run / kept | accuracy (SNR ≥ 5) | cosine mean | cosine min "
             "| λ min–max | training s |", "|---|---|---|---|---|---|---|---|---|"]
    done = {(r["case"], r["start"], r["trained"]): r for r in rows}
    for case in report["cases"]:
        for start, trained in ROWS:
            label = f"| {case} | {start} | {'yes' if trained else 'no'} |"
            r = done.get((case, start, trained))
            if r is None:
                lines.append(f"{label} not run (the run ended before this row) | | | | | |")
                continue
            lines.append(f"{label} {r['steps']} / {r['step_kept']} | {r['accuracy']:.3f} ({r['n_units_snr5']} units) "
                         f"| {r['cosine_mean']:.3f} | {r['cosine_min']:.3f} | {r['lambda_min']:.2f}–"
                         f"{r['lambda_max']:.2f} | {r['train_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from ..threads import configure_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), help=f"of {', '.join(CASES)} (or any hybrid case)")
    ap.add_argument("--duration-s", type=float, default=30.0, help="length of the generated cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--workdir", type=Path, default=None, help="rows.jsonl and the preprocessing cache")
    ap.add_argument("--no-doc", action="store_true", help="print the table; leave docs/ alone")
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_learning_"))
    work.mkdir(parents=True, exist_ok=True)
    report = dict(command="python scripts/benchmark_learning.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  commit=commit(), hardware=hardware(), load_before=os.getloadavg()[0], seed=args.seed,
                  duration_s=args.duration_s, cases=args.cases)
    t0, rows = time.perf_counter(), []
    for name in args.cases:
        with tempfile.TemporaryDirectory(prefix="cache_", dir=work) as scratch:
            prep = prepare(load_case(name, args.duration_s), args.seed, Path(scratch))
            for start, trained in ROWS:
                row = run_row(prep, start, trained, args.seed)
                rows.append(row)
                with open(work / ROWS_FILE, "a") as f:
                    f.write(json.dumps(row) + "\n")
                emit(f"{name} {start:6s} trained={trained!s:5s} acc {row['accuracy']:.3f} cos {row['cosine_mean']:.3f}"
                     f" (start {row['cosine_start']:.3f}) steps {row['steps']}/{row['step_kept']} {row['train_s']:.1f} s")
                report.update(load_after=os.getloadavg()[0], total_s=time.perf_counter() - t0)
                if not args.no_doc:  # after every row: a run stopped part-way leaves the rows it finished
                    write_block(DOC, "LEARNING", markdown(report, rows), section=SECTION)
    text = markdown(report, rows)
    emit(text)
    (work / "learning.json").write_text(json.dumps(dict(report, rows=rows), indent=1))
    emit(f"results in {work}")
    return dict(report, rows=rows)


def _params(seed: int, overrides: dict | None = None):
    from ..params import SortParams

    return SortParams.from_dict({"grow_rounds": 0, "seed": seed, **(overrides or {})})


def _norms(d: np.ndarray) -> np.ndarray:
    return np.linalg.norm(d.reshape(len(d), -1), axis=1)


if __name__ == "__main__":
    main()
