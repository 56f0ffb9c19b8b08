"""State on disk (layer L2): content-addressed blobs, image records and tags, locks, garbage collection.

Imports only the standard library, ``sandbox.errors`` and ``sandbox.oci``: ``sbx run`` opens the store on its hot path.
"""

from sandbox.store.images import ImageRecord, LayerRecord
from sandbox.store.store import BlobIngest, Problem, Store, Usage

__all__ = ["BlobIngest", "ImageRecord", "LayerRecord", "Problem", "Store", "Usage"]
