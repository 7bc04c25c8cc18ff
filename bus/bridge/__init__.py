"""The bridge: moves the events policy releases from one agency's cluster to another's.

``bus bridge run --from A --to B`` runs one worker of direction A->B as a Faust worker
(``bus.bridge.app``); the hot path is ``bus.bridge.replicator.Replicator`` on aiokafka.

The bridge's pure parts (``_verdict``, ``_replays``, ``_checkpoint``, ``_hops``, ``settings``)
import no Kafka client, and importing one of them imports this package first: so
``Replicator`` is imported on first use (module ``__getattr__``), never here.
"""

from typing import TYPE_CHECKING, Any

from bus.bridge.settings import BridgeSettings

if TYPE_CHECKING:
    from bus.bridge.replicator import Replicator


def __getattr__(name: str) -> Any:
    if name == "Replicator":
        from bus.bridge.replicator import Replicator

        return Replicator
    raise AttributeError(f"module 'bus.bridge' has no attribute {name!r}")


__all__ = ["BridgeSettings", "Replicator"]
