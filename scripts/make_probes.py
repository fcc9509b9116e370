"""Regenerate the probeinterface files in crsae_sort/probes/ (package data, found by
crsae_sort.io.reading through importlib.resources)."""
import argparse
from pathlib import Path

import numpy as np
import probeinterface as pi

OUT = Path(__file__).resolve().parent.parent / "crsae_sort" / "probes"


def save(probe: pi.Probe, name: str, description: str) -> None:
    probe.annotate(name=name, description=description)
    probe.set_device_channel_indices(np.arange(probe.get_contact_count()))
    group = pi.ProbeGroup()
    group.add_probe(probe)
    pi.write_probeinterface(OUT / f"{name}.json", group)


def tetrode() -> pi.Probe:
    p = pi.Probe(ndim=2, si_units="um")
    p.set_contacts(positions=np.array([[0, 0], [0, 20], [20, 0], [20, 20]], float), shapes="circle",
                   shape_params={"radius": 6})
    return p


def linear(n: int, pitch_um: float) -> pi.Probe:
    p = pi.Probe(ndim=2, si_units="um")
    p.set_contacts(positions=np.stack([np.zeros(n), np.arange(n) * pitch_um], axis=1), shapes="circle",
                   shape_params={"radius": 7.5})
    p.create_auto_shape("tip")
    return p


def neuropixels(part_number: str) -> pi.Probe:
    """The 384 recorded channels of bank 0 (the default IMRO table): channel i is electrode i."""
    from probeinterface.neuropixels_tools import build_neuropixels_probe

    full = build_neuropixels_probe(part_number)
    return full.get_slice(np.arange(384))


def buzsaki32() -> pi.Probe:
    """Four shanks 200 um apart, each with 8 sites staggered in two columns, 20 um apart vertically."""
    probe = pi.generate_multi_shank(num_shank=4, shank_pitch=[200, 0], num_columns=2, num_contact_per_column=4,
                                    xpitch=16, ypitch=40, y_shift_per_column=[0, 20], contact_shapes="circle",
                                    contact_shape_params={"radius": 6})
    return probe


def single() -> pi.Probe:
    p = pi.Probe(ndim=2, si_units="um")
    p.set_contacts(positions=np.array([[0.0, 0.0]]), shapes="circle", shape_params={"radius": 7.5})
    return p


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()  # --help describes, writes nothing
    save(single(), "single", "one electrode (e.g. the Quiroga 2004 simulations)")
    save(neuropixels("NP1000"), "neuropixels1", "Neuropixels 1.0 (NP1000), bank 0: the 384 channels of the "
         "default IMRO table, channel i = electrode i; for other IMRO tables read the probe from the SpikeGLX "
         "or Open Ephys files instead")
    save(neuropixels("NP2000"), "neuropixels2", "Neuropixels 2.0 single shank (NP2000), bank 0: 384 channels, "
         "channel i = electrode i; for other IMRO tables read the probe from the acquisition files")
    save(buzsaki32(), "buzsaki32", "Buzsaki32-style layout (NeuroNexus): 4 shanks 200 um apart, 8 staggered "
         "sites each, 20 um vertical spacing; channel i = site i shank by shank: check your headstage map")
    save(tetrode(), "tetrode", "4 wires, 20 um square; channel i is wire i")
    save(linear(16, 25.0), "linear16", "16 contacts in one column, 25 um pitch; channel 0 at the tip")
    save(linear(32, 25.0), "linear32", "32 contacts in one column, 25 um pitch; channel 0 at the tip")
