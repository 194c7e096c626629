"""The change feed engine: Rotor as the sink of a Vault/OpenBao socket audit device (issue 19).

listener.py reads the stream into a bounded buffer and keeps only KV changes (operation and path);
worker.py turns changed paths into `Sources.sync_now` calls; feeds.py runs one of each per opted-in
connection on the active replica and answers the sync engine's question: since when has every change
been seen (FeedHealth)? The decisions themselves are pure, in rotor.planning.changefeed.
"""

from rotor.engines.changefeed.feeds import ChangeFeeds

__all__ = ["ChangeFeeds"]
