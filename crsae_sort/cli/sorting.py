"""``crsae-sort sort``, ``report`` and ``demo``: sorting a recording and looking at the result."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from ..errors import InputError
from ..io.reading import probe_names
from .common import Doing, failed_log, load_params_file, parse_sets, run_guarded, setup_console

logger = logging.getLogger("crsae_sort")


@click.command("sort")
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
@click.option("--gain-to-uv", type=float, help="µV per integer step, for inputs without one (raw binary, .mat, ...).")
@click.option("--offset-to-uv", type=float, default=0.0, show_default=True, help="µV offset, with --gain-to-uv.")
@click.option("--counts", is_flag=True,
              help="Sort in the file's own units (integer data of unknown gain): the same spikes as with any gain; "
                   "templates and amplitudes in counts, not µV, as summary.json records (amplitude_unit=counts).")
@click.option("--stream", help="Stream name when the format holds several (NWB: the ElectricalSeries path).")
@click.option("--mat-variable", default="data", show_default=True, help="MATLAB input: the array to read.")
@click.option("--report", "with_report", is_flag=True, help="Also write the HTML report (OUTPUT/report/index.html).")
@click.option("--ground-truth", type=click.Path(),
              help="With --report: a SpikeInterface sorting folder to compare with.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def sort_cmd(input_path, output, probe, device, seed, sets, params_file, model_path, overwrite, resume, phy, nwb,
             sampling_frequency, num_channels, dtype, gain_to_uv, offset_to_uv, counts, stream, mat_variable,
             with_report, ground_truth, verbose):
    """Sort the recording at INPUT into the folder given by -o."""
    verbose = setup_console(verbose)
    doing = Doing("reading the parameters")

    def run():
        from ..params import SortParams
        from ..pipeline import sort
        from ..io.reading import open_recording

        flat = load_params_file(params_file)
        flat.update(parse_sets(sets))
        if device is not None:
            flat["device"] = device
        if seed is not None:
            flat["seed"] = seed
        if counts:
            flat["amplitude_unit"] = "counts"
        params = SortParams.from_dict(flat)
        if params.preprocess.amplitude_unit == "counts" and gain_to_uv is not None:
            raise InputError("--gain-to-uv gives µV, --counts (amplitude_unit=counts) the file's own units: pass one")
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
            from ..report import build_report

            doing.what = f"writing the report of {output}"
            page = build_report(result.output_folder, recording=recording, ground_truth=ground_truth)
        return result, page

    result, page = run_guarded(run, doing=doing, verbose=verbose, failed_log=failed_log(output))
    s = result.summary
    click.echo(f"{len(s.units)} units, {s.num_spikes} spikes from {s.duration_s:.1f} s in "
               f"{s.seconds['total']:.1f} s ({s.times_real_time:.1f}x real time) on {s.device}")
    click.echo(f"results in {result.output_folder}" + ("; templates and amplitudes in counts, not µV"
                                                        if s.amplitude_unit == "counts" else ""))
    if page is not None:
        click.echo(f"report: {page}")


@click.command("report")
@click.argument("output_folder", metavar="OUT", type=click.Path())
@click.option("--recording", "recording_path", type=click.Path(),
              help="The sorted recording, when OUT/recording.json is missing or stale (any input `sort` reads).")
@click.option("--probe", help=f"With --recording: a probeinterface file or one of {', '.join(probe_names())}.")
@click.option("--ground-truth", type=click.Path(), help="A SpikeInterface sorting folder to compare with.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def report_cmd(output_folder, recording_path, probe, ground_truth, verbose):
    """Write OUT/report/index.html: templates, λ, fit, training, quality metrics of a sort in OUT."""
    verbose = setup_console(verbose)

    def run():
        from ..report import build_report

        if not Path(output_folder).is_dir():
            raise InputError(f"output folder {output_folder} does not exist; pass the folder given to "
                             "`crsae-sort sort -o`")
        if ground_truth is not None and not Path(ground_truth).exists():
            raise InputError(f"ground-truth sorting {ground_truth} does not exist")
        recording = None
        if recording_path is not None:
            from ..io.reading import open_recording

            recording = open_recording(recording_path, probe=probe)
        return build_report(output_folder, recording=recording, ground_truth=ground_truth)

    page = run_guarded(run, doing=Doing(f"writing the report of {output_folder}"), verbose=verbose,
                        failed_log=failed_log(Path(output_folder) / "report"))
    click.echo(f"report: {page}")


@click.command("demo")
@click.option("-o", "--output", type=click.Path(), default="crsae_demo", show_default=True,
              help="Output folder; an earlier demo's output there is replaced, so the demo runs again as it is.")
@click.option("--duration", "duration_s", type=float, default=30.0, show_default=True, help="Seconds to generate.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder that an earlier demo did not write.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal.")
def demo_cmd(output, duration_s, device, overwrite, verbose):
    """Sort a seeded SpikeInterface ground-truth tetrode and print accuracy per unit."""
    verbose = setup_console(verbose)

    def run():
        from ..demo import run_demo

        return run_demo(output, duration_s=duration_s, params={"device": device} if device else None,
                        overwrite=overwrite)

    result = run_guarded(run, doing=Doing(f"running the demo into {output}"), verbose=verbose,
                          failed_log=failed_log(output))
    click.echo(f"ground truth: {len(result.table)} units, {result.duration_s:.0f} s tetrode at 30 kHz")
    click.echo(f"{'unit':>6} {'SNR':>6} {'accuracy':>9} {'recall':>7} {'precision':>9}")
    for row in result.table:
        click.echo(f"{row['unit_id']:>6} {row['snr']:6.1f} {row['accuracy']:9.3f} {row['recall']:7.3f} "
                   f"{row['precision']:9.3f}")
    click.echo(f"mean accuracy over units with SNR >= 5: {result.mean_accuracy_snr5:.3f}; "
               f"sorted in {result.wall_s:.1f} s; results in {result.output_folder}")
