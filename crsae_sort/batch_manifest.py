"""The manifest of a lab batch (CSV or YAML): one :class:`BatchJob` per recording.

Columns: ``path`` (required), ``name`` (output subfolder; default the file or folder name),
``probe``, ``stream``, and per-recording parameter overrides (any ``crsae-sort params`` name).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .params import default_params, with_suggestion

MANIFEST_KEYS = ("path", "name", "probe", "stream")


@dataclass
class BatchJob:
    """One manifest row: what to sort and how."""
    index: int
    name: str
    path: Path
    probe: str | None = None
    stream: str | None = None
    params: dict = field(default_factory=dict)  # overrides of this row


def read_manifest(path: str | Path) -> list[BatchJob]:
    """Rows of a CSV (header row) or YAML (list of mappings, or ``recordings:`` plus ``defaults:``)
    manifest; relative paths are relative to the manifest. Parameter overrides are checked here."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    if path.suffix.lower() in (".yaml", ".yml"):
        records = _yaml_records(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            records = [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
                       for row in reader]
            records = [{k: v for k, v in r.items() if v not in ("", None)} for r in records]
    else:
        raise InputError(f"manifest {path.name} must be .csv, .tsv, .yaml or .yml")
    known = set(default_params())
    jobs, names = [], {}
    for i, rec in enumerate(records):
        where = f"{path.name} row {i + 1}"
        if "path" not in rec:
            raise InputError(f"{where} has no path; every recording needs one")
        overrides = dict(rec.pop("params", None) or {})
        unknown = sorted(set(rec) - set(MANIFEST_KEYS) - known)
        if unknown:
            names = ", ".join(with_suggestion(u, (*MANIFEST_KEYS, *known)) for u in unknown)
            raise InputError(f"{where}: unknown column(s) {names}; use path, name, probe, stream or "
                             "parameter names (`crsae-sort params`)")
        overrides.update({k: v for k, v in rec.items() if k in known})
        rec_path = Path(str(rec["path"])).expanduser()
        rec_path = rec_path if rec_path.is_absolute() else (path.parent / rec_path)
        name = str(rec.get("name") or rec_path.stem)
        if name in names:
            raise InputError(f"{where} and row {names[name] + 1} would both write to {name}/; add a name column")
        names[name] = i
        jobs.append(BatchJob(i, name, rec_path.resolve(), rec.get("probe"), rec.get("stream"), overrides))
    if not jobs:
        raise InputError(f"manifest {path} lists no recordings")
    return jobs


def _yaml_records(path: Path) -> list[dict]:
    try:
        import yaml
    except ImportError as exc:
        raise InputError("YAML manifests need PyYAML: pip install pyyaml (or use a CSV manifest)") from exc
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse {path.name}: {exc}") from exc
    defaults = {}
    if isinstance(data, dict):
        defaults = dict(data.get("defaults") or {})
        data = data.get("recordings")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path.name} must be a list of recordings (mappings with a path), or a mapping with "
                         "`recordings:` (and optionally `defaults:` of parameters)")
    out = []
    for rec in data:
        rec = dict(rec)
        rec["params"] = dict(defaults, **(rec.get("params") or {}))
        out.append(rec)
    return out
