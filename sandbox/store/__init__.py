"""State on disk (layer L2): content-addressed blobs, image records and tags, container records, locks, garbage
collection.

Imports only the standard library, ``sandbox.errors`` and ``sandbox.oci``. The package itself imports nothing, so
that the container commands (`ps`, `rm`, `stop`), which read container records only, do not load the image store.
"""
