"""Reading recordings and writing results.

* :mod:`.reading` — any format SpikeInterface or Neo reads, probes (named or files), streams;
* :mod:`.outfolder` — the output folder as a transaction: hidden partial folder, lock, commit;
* :mod:`.results` — what a sort writes: sorting folder, µV templates, spikes table, ``model.pt``,
  JSON, each written atomically;
* :mod:`.phy_nwb` — the Phy template-gui folder and the NWB units table.
"""
