"""Regions: publishes forwarded to a channel's home region, events relayed back (docs/regions.md).

Map of the package:
- ``forward``: the client that sends a publish to the channel's home region's server API
  (bounded concurrency, a timeout, ``unavailable`` when the home cannot be reached), and reads
  history there when the local copy is not current.
- ``home``: the home side of a link: a relay's WebSocket, each followed channel streamed
  from the recent window, else the store, after the relay's offset.
- ``relay``: this region's side: one link per home region, the followed channels' events
  written into the local store's replica and published into the local fan-out, in order; the
  broker wrapper that follows a remote-home channel when the node's first subscriber arrives.
- ``pushes``: the ephemeral pushes (typing, read, join/leave) waiting for a link, each way:
  coalesced, bounded, the newest dropped when full.
"""
