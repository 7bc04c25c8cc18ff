"""A Faust agent that receives verified events of Interpol's feed mirrored to Europol's cluster.

Run it against a running federation (``make up``); it runs a Faust worker until stopped::

    python examples/faust_verified.py

It prints one JSON line per verified event. A record that fails verification, validation or
the release checks goes to ``bus.quarantine`` on Europol's cluster with its reason, and the
agent goes on. Settings from the environment: ``BUS_CONFIG`` (the federation's ``bus.toml``),
``BUS_AGENCY`` (whose cluster: ``europol``), ``BUS_TOPICS`` (comma-separated:
``interpol.intel.events``), ``BUS_APP_ID`` (the Faust app and its consumer group).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import faust

from bus.config import load_config
from bus.faust_streams import VerifiedStreams, create_app

config = load_config()  # BUS_CONFIG, else the local federation's bus.toml
agency = os.environ.get("BUS_AGENCY", "europol")
topics = os.environ.get("BUS_TOPICS", "interpol.intel.events").split(",")

app = create_app(
    config,
    agency,
    os.environ.get("BUS_APP_ID", "example-verified"),
    datadir=os.environ.get("BUS_APP_DATA", tempfile.mkdtemp(prefix="faust-verified-")),
    web_enabled=False,
)
feeds = VerifiedStreams(app, config, agency)


@app.agent(feeds.topic(*topics))
async def show(stream: Any) -> None:
    async for delivery in feeds.verified(stream):
        line = {
            "event_id": delivery.event_id,
            "origin": delivery.verified.agency,
            "topic": delivery.topic,
            "partition": delivery.partition,
            "offset": delivery.offset,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    # A worker until SIGTERM or Ctrl-C; `print` goes to stdout, not into Faust's log.
    faust.Worker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()
