"""``crsae-sort``: the command line (click), one module per family of commands; heavy imports live
inside each command, so ``crsae-sort --help`` stays fast."""
from __future__ import annotations

import click

from .sorting import demo_cmd, report_cmd, sort_cmd
from .tools import batch_cmd, bench_group, info_cmd, install_si_hook_cmd, params_cmd


@click.group(context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="crsae-sort")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to the terminal (as -v after the command).")
def main(verbose):
    """Spike sorting with a constrained recurrent sparse autoencoder (CRsAE)."""
    from ..threads import prefer_passive_waiting

    prefer_passive_waiting()  # before any command imports torch: sorts sharing the CPU do not collapse


for _command in (sort_cmd, report_cmd, demo_cmd, params_cmd, info_cmd, install_si_hook_cmd, batch_cmd, bench_group):
    main.add_command(_command)
