"""The Ray backend's cluster-side slots (extra ``oddjob[ray]``).

A pool with ``backend="ray"`` keeps its ``pool_size`` slots on the Ray cluster as a
named, detached placement group (``slots_name(pool)``), so that every program using the
same pool name in the same Ray namespace shares one limit. The group belongs to the
cluster: stopping a pool, or ending a program, leaves it for the others. Remove it when
no program uses that pool any more, or to start the pool again with another size:

    from oddjob.contrib import ray as oddjob_ray

    oddjob_ray.remove_slots("api")      # True if there were slots to remove
"""

from __future__ import annotations

from .._ray_worker import NAMESPACE, remove_slots, slots_name

__all__ = ["NAMESPACE", "remove_slots", "slots_name"]
