"""Content hashing: files (streamed xxh3-128), folders (trees), and the stat cache that skips
unchanged files. Kept apart from storage, as in dvc-data's `hashfile/`."""

from repro.hashing.filehash import hash_file
from repro.hashing.tree import Tree, TreeEntry

__all__ = ["Tree", "TreeEntry", "hash_file"]
