"""Regenerate the probeinterface files in probes/ (run from the repository root)."""
from pathlib import Path

import numpy as np
import probeinterface as pi

OUT = Path(__file__).resolve().parent.parent / "probes"


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


def single() -> pi.Probe:
    p = pi.Probe(ndim=2, si_units="um")
    p.set_contacts(positions=np.array([[0.0, 0.0]]), shapes="circle", shape_params={"radius": 7.5})
    return p


if __name__ == "__main__":
    save(single(), "single", "one electrode (e.g. the Quiroga 2004 simulations)")
    save(tetrode(), "tetrode", "4 wires, 20 um square; channel i is wire i")
    save(linear(16, 25.0), "linear16", "16 contacts in one column, 25 um pitch; channel 0 at the tip")
    save(linear(32, 25.0), "linear32", "32 contacts in one column, 25 um pitch; channel 0 at the tip")
