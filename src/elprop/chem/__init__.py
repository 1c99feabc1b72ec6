"""RDKit helpers: parsing, 3D embedding, atom/bond feature sets, scaffolds."""
