"""Reading recordings and writing results.

* :mod:`.reading` — any format SpikeInterface or Neo reads, probes (named or files), streams;
* :mod:`.outfolder` — the output folder as a transaction: hidden partial folder, lock, commit;
* :mod:`.checkpoints` — resume checkpoints as plain tensors and containers (read without running code);
* :mod:`.descriptions` — SpikeInterface descriptions and folders checked before they are loaded;
* :mod:`.results` — what a sort writes: sorting folder, µV templates, spikes table, ``model.pt``,
  JSON, each written atomically;
* :mod:`.phy_nwb` — the Phy template-gui folder and the NWB units table.
"""
