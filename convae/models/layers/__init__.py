"""Building blocks of the learned transforms: GDN, sub-pixel and patch transposed convolutions."""
