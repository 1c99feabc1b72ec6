"""DFT labels for any molecule: a real geometry (ETKDG + MMFF, then GFN2-xTB), then a PySCF single point at the
QM9 level of theory. ``geometry`` makes structures, ``compute`` labels one molecule (on a Dask worker), ``run``
drives a resumable batch into an output folder."""
