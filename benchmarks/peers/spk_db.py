"""Run with the peers' Python: write a SchNetPack ASE database and split file from the benchmark's npz.

usage: python spk_db.py data.npz out.db split.npz
"""
import sys

import numpy as np
from ase import Atoms
from schnetpack.data import ASEAtomsData

src, db, split = sys.argv[1:4]
d = np.load(src)
targets = [str(t) for t in d["targets"]]
data = ASEAtomsData.create(db, distance_unit="Ang", property_unit_dict={t: "eV" for t in targets})
atoms, props = [], []
for i in range(len(d["offsets"]) - 1):
    a, b = d["offsets"][i], d["offsets"][i + 1]
    atoms.append(Atoms(numbers=d["z"][a:b], positions=d["pos"][a:b]))
    props.append({t: np.array([d["y"][i, k]], dtype=np.float64) for k, t in enumerate(targets)})
data.add_systems(props, atoms)
np.savez(split, train_idx=d["train"], val_idx=d["val"], test_idx=d["test"])
print(f"wrote {len(atoms)} molecules to {db}")
