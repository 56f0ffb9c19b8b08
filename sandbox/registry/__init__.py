"""The only code that speaks HTTP (layer L2): registry auth, manifests, blobs, uploads, search.

Kept empty on purpose: importing ``sandbox.registry`` must not import ``requests``; the modules below import it
lazily, when a client is built.
"""
