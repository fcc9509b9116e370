"""``crsae-sort params``, ``info``, ``install-si-hook``, ``batch`` and ``bench`` (``convex``, ``ablation``)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from .common import Doing, failed_log, load_params_file, parse_sets, run_guarded, setup_console

logger = logging.getLogger("crsae_sort")


@click.command("params")
@click.option("--json", "as_json", is_flag=True, help="Print the defaults as JSON (a --params file).")
@click.option("--markdown", is_flag=True, help="Print the Markdown table of docs/parameters.md.")
def params_cmd(as_json, markdown):
    """List every parameter with its default, unit, bounds and help."""
    from ..params import default_params, describe

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


@click.command("info")
def info_cmd():
    """Versions of crsae-sort and its dependencies, and the torch devices."""
    import torch

    from ..runlog import versions

    for name, version in versions().items():
        click.echo(f"{name}: {version}")
    from ..threads import choose_threads, describe_waiting

    threads, why = choose_threads()
    click.echo(f"torch threads: {threads} for a sort ({why}); {describe_waiting()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            click.echo(f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        click.echo("cuda: not available (CPU only)")


@click.command("install-si-hook")
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

    from .._register import PTH_LINE, PTH_NAME

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


@click.command("batch")
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
    verbose = setup_console(verbose)
    doing = Doing("reading the parameters")
    flat = run_guarded(lambda: dict(load_params_file(params_file), **parse_sets(sets)), doing=doing,
                        verbose=verbose)

    if engine == "slurm":
        def slurm():
            from ..batch import write_slurm_script

            sbatch = parse_sets(tuple(slurm_args))
            return write_slurm_script(manifest, output, sets=flat, sbatch_args=sbatch, submit=not no_submit)

        doing.what = f"writing the SLURM script into {output}"
        _, message = run_guarded(slurm, doing=doing, verbose=verbose, failed_log=failed_log(output))
        click.echo(message)
        return

    def run():
        from ..batch import run_batch

        engine_kwargs = {"scheduler": scheduler} if scheduler else None
        return run_batch(manifest, output, engine=engine, n_jobs=n_jobs, params=flat, engine_kwargs=engine_kwargs,
                         only=only, verbose=verbose)

    from ..batch import format_table

    doing.what = f"sorting the recordings of {manifest} into {output}"
    rows = run_guarded(run, doing=doing, verbose=verbose, failed_log=failed_log(output))
    click.echo(format_table(rows))
    failed = sum(r.status == "failed" for r in rows)
    if failed:
        click.echo(f"{failed} of {len(rows)} recording(s) failed; see each folder's spikeinterface_log.json "
                   "and sorter_output/crsae.log", err=True)
        raise SystemExit(1)


@click.group("bench")
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
    verbose = setup_console(verbose)

    def run():
        from ..bench.convex import describe, headline, plot, run, table

        folder = Path(output)
        rows = run(folder, plan_name, tuple(m.strip() for m in methods.split(",")) if methods else None, device)
        text = describe(plan_name, device) + "\n\n" + headline(rows) + "\n\n" + table(rows) + "\n"
        (folder / "table.md").write_text(text)
        plot(rows, folder / "cost_memory.png")
        return text

    click.echo(run_guarded(run, doing=Doing(f"running the convex benchmark into {output}"), verbose=verbose,
                            failed_log=failed_log(output)))


@bench_group.command("ablation", context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.option("--quick", is_flag=True, help="Two tiny configurations on a 4-s tetrode (a smoke test, < 30 s).")
@click.option("--no-doc", is_flag=True, help="Print only; leave docs/benchmarks.md alone.")
@click.option("--workdir", default="crsae_bench_ablation", show_default=True, help="Recordings and results.jsonl.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
@click.pass_context
def bench_ablation_cmd(ctx, quick, no_doc, workdir, verbose):
    """Encoders x T x dictionary-gradient rules on seeded ground truth (tetrode, 32 channels).

    Further options (--cases, --duration, --encoders, --iterations, --rules) pass through to
    scripts/benchmark_ablation.py; see its --help.
    """
    verbose = setup_console(verbose)

    def run():
        from ..bench.ablation import main

        argv = ["--workdir", workdir, *(["--quick"] if quick else []), *(["--no-doc"] if no_doc else []), *ctx.args]
        main(argv)
        return f"results in {workdir}/results.jsonl"

    click.echo(run_guarded(run, doing=Doing(f"running the ablation into {workdir}"), verbose=verbose,
                            failed_log=failed_log(workdir)))


def markdown_table() -> str:
    """The parameters as the Markdown table in ``docs/parameters.md`` (from :func:`crsae_sort.params.describe`)."""
    lines = ["# Parameters", "",
             "Generated from `crsae_sort/params.py` by `crsae-sort params --markdown`; do not edit by hand.",
             "Set any of them with `crsae-sort sort ... --set name=value`, a `--params file.json`, or a dict",
             "`crsae_sort.sort(recording, folder, {\"name\": value})`.", ""]
    from ..params import _all_sections, describe

    for sec, klass in _all_sections().items():
        lines += [f"## {sec}", "", klass.__doc__.strip(), "",
                  "| name | type | default | unit | bounds | description |", "|---|---|---|---|---|---|"]
        for row in (r for r in describe() if r["section"] == sec):
            lines.append(f"| `{row['name']}` | {row['type']} | `{row['default']!r}` | {row['unit']} | "
                         f"{row['bounds'].replace(' | ', ', ')} | {row['help']} |")
        lines.append("")
    return "\n".join(lines)
