"""``crsae-sort``: the command line. Heavy imports live inside each command."""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path

import click

from .errors import InputError, command_line
from .io.reading import probe_names

logger = logging.getLogger("crsae_sort")
_CONSOLE = "crsae_sort.console"


def _setup_console(verbose: bool) -> None:
    """Log to stderr: warnings; with -v every INFO line; without a terminal (a batch log, a pipe: no
    progress bars there) also the lines marked as progress, one per stage."""
    for old in [h for h in logger.handlers if h.get_name() == _CONSOLE]:  # an earlier command in this process
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_CONSOLE)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(logging.INFO if verbose or not sys.stderr.isatty() else logging.WARNING)
    if not verbose:
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or getattr(r, "progress", False))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _failed_log(output) -> Path:
    from .outfolder import failed_log_path

    return failed_log_path(Path(output).resolve())


class _Doing:
    """What a command is doing now, for the message of an unexpected failure."""

    def __init__(self, what: str):
        self.what = what


def _parse_sets(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--set {pair!r} must look like key=value (see `crsae-sort params`)")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _load_params_file(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read parameters from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object of parameter: value")
    return data


def _run_guarded(fn, *, doing: _Doing, verbose: bool, failed_log: Path | None = None):
    """Input errors become their one-line message. Anything else (a bug, a system fault) says what was
    being done and where its traceback is (``failed_log``, unless the sort kept its own log there),
    and -v prints the traceback."""
    started = time.time()
    try:
        with command_line():
            return fn()
    except InputError as exc:
        logger.debug("input error", exc_info=True)
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        from .runlog import write_failure_log

        log = write_failure_log(failed_log, doing.what, exc, since=started) if failed_log is not None else None
        if verbose:
            click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
            where = "the traceback is above" + (f" and in {log}" if log else "")
        else:
            where = (f"the traceback is in {log}; " if log else "") + "rerun with -v to print it"
        text = str(exc).strip().rstrip(".")
        raise click.ClickException(f"while {doing.what}: {type(exc).__name__}: {text}; {where}") from None


@click.group(context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="crsae-sort")
def main():
    """Spike sorting with a constrained recurrent sparse autoencoder (CRsAE)."""
    from .threads import prefer_passive_waiting

    prefer_passive_waiting()  # before any command imports torch: sorts sharing the CPU do not collapse


@main.command("sort")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output folder (must not exist unless --overwrite; missing parent folders are created).")
@click.option("--probe", help=f"Probe: a probeinterface file (.json, .prb) or a probe shipped with crsae-sort: "
                              f"{', '.join(probe_names())}.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (overrides the device parameter).")
@click.option("--seed", type=int, help="Random seed (overrides the seed parameter).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a parameter; repeatable.")
@click.option("--params", "params_file", type=click.Path(), help="JSON file of parameters.")
@click.option("--model", "model_path", type=click.Path(), help="Sort with a trained model.pt instead of learning one.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into the same output folder.")
@click.option("--phy", is_flag=True, help="Also write a Phy folder (phy/) with the learned templates.")
@click.option("--nwb", is_flag=True, help="Also write an NWB file (units.nwb): units table and provenance.")
@click.option("--sampling-frequency", type=float, help="Raw binary: sampling rate in Hz.")
@click.option("--num-channels", type=int, help="Raw binary: number of interleaved channels.")
@click.option("--dtype", help="Raw binary: sample type (int16, float32, ...).")
@click.option("--gain-to-uv", type=float, help="Raw binary: µV per integer step.")
@click.option("--offset-to-uv", type=float, default=0.0, show_default=True, help="Raw binary: µV offset.")
@click.option("--stream", help="Stream name when the format holds several (NWB: the ElectricalSeries path).")
@click.option("--mat-variable", default="data", show_default=True, help="MATLAB input: the array to read.")
@click.option("--report", "with_report", is_flag=True, help="Also write the HTML report (OUTPUT/report/index.html).")
@click.option("--ground-truth", type=click.Path(),
              help="With --report: a SpikeInterface sorting folder to compare with.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def sort_cmd(input_path, output, probe, device, seed, sets, params_file, model_path, overwrite, resume, phy, nwb,
             sampling_frequency, num_channels, dtype, gain_to_uv, offset_to_uv, stream, mat_variable, with_report,
             ground_truth, verbose):
    """Sort the recording at INPUT into the folder given by -o."""
    _setup_console(verbose)
    doing = _Doing("reading the parameters")

    def run():
        from .params import SortParams
        from .pipeline import sort
        from .io.reading import open_recording

        flat = _load_params_file(params_file)
        flat.update(_parse_sets(sets))
        if device is not None:
            flat["device"] = device
        if seed is not None:
            flat["seed"] = seed
        params = SortParams.from_dict(flat)
        if model_path is not None and not Path(model_path).exists():
            raise InputError(f"model file {model_path} does not exist")
        if ground_truth is not None and not with_report:
            raise InputError("--ground-truth is used by the report: add --report")
        if ground_truth is not None and not Path(ground_truth).exists():
            raise InputError(f"ground-truth sorting {ground_truth} does not exist")
        doing.what = f"opening {input_path}"
        recording = open_recording(input_path, probe=probe, sampling_frequency_hz=sampling_frequency,
                                   num_channels=num_channels, dtype=dtype, gain_to_uv=gain_to_uv,
                                   offset_to_uv=offset_to_uv, stream=stream, mat_variable=mat_variable)
        doing.what = f"sorting {input_path} into {output}"
        result = sort(recording, output, params, model_path=model_path, overwrite=overwrite, resume=resume,
                      phy=phy, nwb=nwb)
        page = None
        if with_report:
            from .report import build_report

            doing.what = f"writing the report of {output}"
            page = build_report(result.output_folder, recording=recording, ground_truth=ground_truth)
        return result, page

    result, page = _run_guarded(run, doing=doing, verbose=verbose, failed_log=_failed_log(output))
    s = result.summary
    click.echo(f"{len(s.units)} units, {s.num_spikes} spikes from {s.duration_s:.1f} s in "
               f"{s.seconds['total']:.1f} s ({s.times_real_time:.1f}x real time) on {s.device}")
    click.echo(f"results in {result.output_folder}")
    if page is not None:
        click.echo(f"report: {page}")


@main.command("report")
@click.argument("output_folder", metavar="OUT", type=click.Path())
@click.option("--recording", "recording_path", type=click.Path(),
              help="The sorted recording, when OUT/recording.json is missing or stale (any input `sort` reads).")
@click.option("--probe", help=f"With --recording: a probeinterface file or one of {', '.join(probe_names())}.")
@click.option("--ground-truth", type=click.Path(), help="A SpikeInterface sorting folder to compare with.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def report_cmd(output_folder, recording_path, probe, ground_truth, verbose):
    """Write OUT/report/index.html: templates, λ, fit, training, quality metrics of a sort in OUT."""
    _setup_console(verbose)

    def run():
        from .report import build_report

        if not Path(output_folder).is_dir():
            raise InputError(f"output folder {output_folder} does not exist; pass the folder given to "
                             "`crsae-sort sort -o`")
        if ground_truth is not None and not Path(ground_truth).exists():
            raise InputError(f"ground-truth sorting {ground_truth} does not exist")
        recording = None
        if recording_path is not None:
            from .io.reading import open_recording

            recording = open_recording(recording_path, probe=probe)
        return build_report(output_folder, recording=recording, ground_truth=ground_truth)

    page = _run_guarded(run, doing=_Doing(f"writing the report of {output_folder}"), verbose=verbose,
                        failed_log=_failed_log(Path(output_folder) / "report"))
    click.echo(f"report: {page}")


@main.command("demo")
@click.option("-o", "--output", type=click.Path(), default="crsae_demo", show_default=True, help="Output folder.")
@click.option("--duration", "duration_s", type=float, default=30.0, show_default=True, help="Seconds to generate.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def demo_cmd(output, duration_s, device, overwrite, verbose):
    """Sort a seeded SpikeInterface ground-truth tetrode and print accuracy per unit."""
    _setup_console(verbose)

    def run():
        from .demo import run_demo

        return run_demo(output, duration_s=duration_s, params={"device": device} if device else None,
                        overwrite=overwrite)

    result = _run_guarded(run, doing=_Doing(f"running the demo into {output}"), verbose=verbose,
                          failed_log=_failed_log(output))
    click.echo(f"ground truth: {len(result.table)} units, {result.duration_s:.0f} s tetrode at 30 kHz")
    click.echo(f"{'unit':>6} {'SNR':>6} {'accuracy':>9} {'recall':>7} {'precision':>9}")
    for row in result.table:
        click.echo(f"{row['unit_id']:>6} {row['snr']:6.1f} {row['accuracy']:9.3f} {row['recall']:7.3f} "
                   f"{row['precision']:9.3f}")
    click.echo(f"mean accuracy over units with SNR >= 5: {result.mean_accuracy_snr5:.3f}; "
               f"sorted in {result.wall_s:.1f} s; results in {result.output_folder}")


@main.command("params")
@click.option("--json", "as_json", is_flag=True, help="Print the defaults as JSON (a --params file).")
@click.option("--markdown", is_flag=True, help="Print the Markdown table of docs/parameters.md.")
def params_cmd(as_json, markdown):
    """List every parameter with its default, unit, bounds and help."""
    from .params import default_params, describe, markdown_table

    if markdown:
        click.echo(markdown_table())
        return
    if as_json:
        click.echo(json.dumps(default_params(), indent=2))
        return
    for row in describe():
        unit = f" [{row['unit']}]" if row["unit"] else ""
        bounds = f" {row['bounds']}" if row["bounds"] else ""
        click.echo(f"{row['name']} = {row['default']!r}{unit}{bounds}  ({row['section']})")
        click.echo(f"    {row['help']}")


@main.command("info")
def info_cmd():
    """Versions of crsae-sort and its dependencies, and the torch devices."""
    import torch

    from .runlog import versions

    for name, version in versions().items():
        click.echo(f"{name}: {version}")
    from .threads import choose_threads, describe_waiting

    threads, why = choose_threads()
    click.echo(f"torch threads: {threads} for a sort ({why}); {describe_waiting()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            click.echo(f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        click.echo("cuda: not available (CPU only)")


@main.command("install-si-hook")
@click.option("--user", is_flag=True, help="Write into the user site-packages instead of the environment's.")
@click.option("--site-dir", type=click.Path(file_okay=False), help="Write into this site directory instead.")
@click.option("--remove", is_flag=True, help="Remove the hook instead of writing it.")
def install_si_hook_cmd(user, site_dir, remove):
    """Make every Python process of this environment register the crsae sorter.

    SpikeInterface finds sorters by name in its own list, so a worker process that never imports
    crsae_sort (joblib/loky, dask, containers, slurm scripts) cannot run run_sorter("crsae", ...).
    This writes a one-line .pth file that imports crsae_sort (light: no torch) at start-up.
    """
    import site
    import sysconfig

    from ._register import PTH_LINE, PTH_NAME

    if site_dir:
        folder = Path(site_dir)
    elif user:
        if not site.ENABLE_USER_SITE:
            raise click.ClickException("user site-packages are disabled here (a virtual environment, or python -s): "
                                       "run without --user to install the hook into this environment")
        folder = Path(site.getusersitepackages())
    else:
        folder = Path(sysconfig.get_paths()["purelib"])
    path = folder / PTH_NAME
    if remove:
        if path.exists():
            path.unlink()
            click.echo(f"removed {path}")
        else:
            click.echo(f"no hook at {path}")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(PTH_LINE)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}; try --user or --site-dir") from None
    click.echo(f"wrote {path}")


@main.command("batch")
@click.argument("manifest", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Folder holding one subfolder per recording.")
@click.option("--engine", type=click.Choice(["loop", "processpoolexecutor", "joblib", "dask", "slurm"]),
              default="loop", show_default=True, help="SpikeInterface job engine; slurm writes an array script.")
@click.option("-j", "--jobs", "n_jobs", type=int, default=1, show_default=True,
              help="Parallel workers (processpoolexecutor, joblib, local dask).")
@click.option("--scheduler", help="dask: address of a running scheduler (default: a local cluster of --jobs workers).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Parameter for every recording; repeatable.")
@click.option("--params", "params_file", type=click.Path(), help="JSON file of parameters for every recording.")
@click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
              help="slurm: an #SBATCH option (partition=gpu, mem=32G, gres=gpu:1); repeatable.")
@click.option("--no-submit", is_flag=True, help="slurm: write the script but do not call sbatch.")
@click.option("--only", type=int, help="Sort only this manifest row (0-based); used by the SLURM array.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def batch_cmd(manifest, output, engine, n_jobs, scheduler, sets, params_file, slurm_args, no_submit, only, verbose):
    """Sort every recording listed in MANIFEST (CSV or YAML) into OUTPUT/<name>/.

    Columns: path (required), name, probe, stream, and any parameter name as a per-recording
    override. One failure does not stop the others; finished recordings are skipped when the
    batch is run again; a summary table ends the run (also in OUTPUT/batch_summary.csv).
    """
    _setup_console(verbose)
    doing = _Doing("reading the parameters")
    flat = _run_guarded(lambda: dict(_load_params_file(params_file), **_parse_sets(sets)), doing=doing,
                        verbose=verbose)

    if engine == "slurm":
        def slurm():
            from .batch import write_slurm_script

            sbatch = _parse_sets(tuple(slurm_args))
            return write_slurm_script(manifest, output, sets=flat, sbatch_args=sbatch, submit=not no_submit)

        doing.what = f"writing the SLURM script into {output}"
        _, message = _run_guarded(slurm, doing=doing, verbose=verbose, failed_log=_failed_log(output))
        click.echo(message)
        return

    def run():
        from .batch import run_batch

        engine_kwargs = {"scheduler": scheduler} if scheduler else None
        return run_batch(manifest, output, engine=engine, n_jobs=n_jobs, params=flat, engine_kwargs=engine_kwargs,
                         only=only, verbose=verbose)

    from .batch import format_table

    doing.what = f"sorting the recordings of {manifest} into {output}"
    rows = _run_guarded(run, doing=doing, verbose=verbose, failed_log=_failed_log(output))
    click.echo(format_table(rows))
    failed = sum(r.status == "failed" for r in rows)
    if failed:
        click.echo(f"{failed} of {len(rows)} recording(s) failed; see each folder's spikeinterface_log.json "
                   "and sorter_output/crsae.log", err=True)
        raise SystemExit(1)


@main.group("bench")
def bench_group():
    """Benchmarks of the method itself.

    The published tables (other sorters, real recordings, speed, memory, sorts sharing the CPU) and
    the scripts that regenerate them are in the source repository: see the Benchmarks section of
    the README (the project page).
    """


@bench_group.command("convex")
@click.option("-o", "--output", type=click.Path(), default="crsae_bench_convex", show_default=True,
              help="Folder for problem.npz, results.json, table.md and cost_memory.png.")
@click.option("--plan", "plan_name", type=click.Choice(["tiny", "quick", "full"]), default="quick", show_default=True,
              help="tiny: 2 lengths, 1 repeat (a smoke test); quick: 0.01-1 s (CBP to 0.1 s); full: 0.01-3 s, "
                   "the encoder to 100 s.")
@click.option("--methods", help=f"Comma-separated subset of: {', '.join(('crsae', 'crsae-dense', 'fista', 'admm', 'cbp'))}.")
@click.option("--device", default="cpu", show_default=True,
              help="Where the CRsAE encoder runs (cpu, cuda, cuda:N, auto); the convex solvers run on the CPU.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def bench_convex_cmd(output, plan_name, methods, device, verbose):
    """The CRsAE encoder against convex solvers (FISTA, SPORCO ADMM, CBP via cvxpy) on one problem."""
    _setup_console(verbose)

    def run():
        from .bench.convex import describe, headline, plot, run, table

        folder = Path(output)
        rows = run(folder, plan_name, tuple(m.strip() for m in methods.split(",")) if methods else None, device)
        text = describe(plan_name, device) + "\n\n" + headline(rows) + "\n\n" + table(rows) + "\n"
        (folder / "table.md").write_text(text)
        plot(rows, folder / "cost_memory.png")
        return text

    click.echo(_run_guarded(run, doing=_Doing(f"running the convex benchmark into {output}"), verbose=verbose,
                            failed_log=_failed_log(output)))
