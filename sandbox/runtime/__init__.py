"""Layer L3: build the container process: id maps, namespaces, root filesystem drivers, the in-namespace init.

``sandbox.runtime.idmap`` (id maps from /etc/subuid), ``sandbox.runtime.userns`` (run a job as root of a user
namespace: unpacking and removing layers with mapped owners), ``sandbox.runtime.nsjob`` (the child's side and the ops).
Submodules are imported on use, so importing this package costs nothing.
"""
