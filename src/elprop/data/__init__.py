"""Readers (qm9, xyz, sdf, smiles, csv), embedded data sets, splits and ``load_data``."""
