"""The bridge: moves the events policy releases from one agency's cluster to another's.

``bus bridge run --from A --to B`` runs one worker of direction A->B as a Faust worker
(``bus.bridge.app``); the hot path is ``bus.bridge.replicator.Replicator`` on aiokafka.
"""

from bus.bridge.replicator import Replicator
from bus.bridge.settings import BridgeSettings

__all__ = ["BridgeSettings", "Replicator"]
