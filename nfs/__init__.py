"""minihpc's NFS-style shared filesystem: a behaviour model of an NFS client
(nfs.model), named profiles (nfs.profiles), fault rules (nfs.faults) and the
FUSE client that applies them on every node (nfs.client)."""
