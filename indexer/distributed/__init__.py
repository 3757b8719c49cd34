"""Indexing on Ray (``pip install 'vitrina[ray]'``): bulk embedding by an actor pool, large IVF segments by shards.

    from indexer.distributed import RayOptions
    from indexer.distributed.ray_embedding import build_index_ray
    report = build_index_ray("catalog.jsonl", "my-index", model=ModelConfig(), identity=encoder.identity,
                             ray=RayOptions(address="auto", actors=1))

Nothing here imports Ray at import time: ``import_ray`` does, when a run asks for it, and says how to install
it when it is missing.  This module holds what needs no Ray: the options, the errors, how many actors fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from indexer.errors import VitrinaError

#: How to get Ray: the extra that pins a Ray with Ray Data.
RAY_INSTALL = "pip install 'vitrina[ray]'"
#: ``--ray auto``: a private Ray started on this machine (else: the address of a running cluster).
LOCAL = "auto"


class RayNotInstalledError(VitrinaError):
    """``--ray`` was asked for and Ray (with Ray Data) cannot be imported."""


class ActorsError(VitrinaError):
    """More embedding actors (or GPUs) asked for than the Ray cluster can run without hanging."""


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where and how wide a Ray run is."""

    #: "auto": start a Ray on this machine (or use the one this process already started); else the address of
    #: a running cluster ("ray://head:10001", "head:6379"), whose workers must have vitrina installed.
    address: str = LOCAL
    #: Embedding actors, one model and one CPU each; None: the cluster's CPUs - 1 (see ``actor_count``).
    actors: int | None = None
    #: GPUs per actor (fractions share a GPU); 0 embeds on CPUs.
    gpus_per_actor: float = 0.0


def ray_missing_message(exc: BaseException | None = None) -> str:
    """What to tell a user who asked for ``--ray`` without Ray installed."""
    why = f" ({exc})" if exc is not None else ""
    return f"--ray needs Ray with Ray Data, which is not installed{why}: {RAY_INSTALL}"


def import_ray() -> ModuleType:
    """``ray`` with ``ray.data`` imported, or ``RayNotInstalledError`` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data extra has no actor pools over datasets)
    except ImportError as exc:
        raise RayNotInstalledError(ray_missing_message(exc)) from None
    return ray


def connect(address: str = LOCAL) -> bool:
    """Make sure this process is connected to Ray; True when this call started it (then ``ray.shutdown()``
    is the caller's), False when it was already connected.

    "auto" starts a local Ray on this machine's CPUs, bound to 127.0.0.1, without the dashboard; any other
    address joins that cluster."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if address == LOCAL:
        # "local": a new Ray even where $RAY_ADDRESS names a cluster (Ray's own "auto" would join that one)
        ray.init(address="local", num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1", **quiet)
    else:
        ray.init(address=address, **quiet)
    return True


def actor_count(requested: int | None, *, cpus: float, gpus: float = 0.0, gpus_per_actor: float = 0.0) -> int:
    """The actors a run uses: ``requested``, or the cluster's CPUs - 1 when None.

    Each actor takes one CPU for its whole life.  One CPU must stay free: Ray Data's own tasks (splitting the
    catalog, moving blocks) need one, and a pool holding every CPU starves them and hangs (Ray issue 44687).
    With ``gpus_per_actor`` the GPUs bound the count too."""
    most = int(cpus) - 1
    if most < 1:
        raise ActorsError(f"the Ray cluster has {cpus:g} CPU(s): embedding actors need 2 or more (one CPU per actor, "
                          "and one left free for Ray Data's tasks, without which the pool hangs)")
    if gpus_per_actor > 0:
        fit = int(gpus / gpus_per_actor + 1e-9)
        if fit < 1:
            raise ActorsError(f"--gpus-per-actor {gpus_per_actor:g}: the Ray cluster has {gpus:g} GPU(s)")
        most = min(most, fit)
    if requested is None:
        return most
    if requested > most:
        gpu_note = f" and {gpus:g} GPU(s) at {gpus_per_actor:g} per actor" if gpus_per_actor > 0 else ""
        raise ActorsError(f"{requested} actors asked for; the Ray cluster has {cpus:g} CPUs{gpu_note}, so at most {most}: "
                          "each actor takes one CPU and one must stay free for Ray Data's tasks (a pool that takes "
                          "every CPU hangs)")
    return requested


__all__ = ["LOCAL", "RAY_INSTALL", "ActorsError", "RayNotInstalledError", "RayOptions", "actor_count", "connect",
           "import_ray", "ray_missing_message"]
