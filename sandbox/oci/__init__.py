"""OCI and Docker image formats: references, digests, media types, manifests, image config. No I/O (layer L1)."""
