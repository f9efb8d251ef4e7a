"""Image files <-> code files: the compress/decompress pipeline, the on-disk format, info and merge."""
