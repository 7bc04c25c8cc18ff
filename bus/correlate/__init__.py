"""The reference stream processor: identifiers shared by events of different agencies.

``bus correlate run --agency X`` (``bus.correlate.app``, ``bus.correlate.processor``) reads X's
own and mirrored feeds on X's cluster and writes ``CorrelationHit`` records to
``bus.correlations``; docs/correlate.md describes it.
"""
