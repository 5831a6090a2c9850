"""provision: declarative tun/tap devices, addresses and routes, reconciled over netlink.

Layout follows the pipeline: inventory (load, merge) → schema, validate → plan (pure diff)
→ kernel (observe, apply) through a connection → reconcile (the pipeline) → cli.
"""

__version__ = "0.1.0"
