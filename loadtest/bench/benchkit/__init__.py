"""Head-to-head benchmark of the gateway against python-socketio and Node socket.io.

Run through ``loadtest/bench/run.sh`` (``make bench``), which prepares the virtual environments
and node_modules under ``loadtest/bench/.work/`` and pins this process to the client core.

- ``__main__``: command line; runs every scenario against every target, writes the report.
- ``plan``: sizes and durations (full and quick), and where things live.
- ``targets``: the servers compared and how a cluster of one (nodes + Redis) is started.
- ``procs``: spawning pinned processes, stopping them, reading their CPU and memory.
- ``wire``: per-target protocol adapters (gateway JSON, Engine.IO/Socket.IO).
- ``client``: the picows client used against every target; counters and latency samples.
- ``pacing``: open-loop sending at a set rate.
- ``measure``: window snapshots, rates, CPU shares, percentiles.
- ``fanout`` (S1, S2), ``idle`` (S3), ``chat`` (S4): the scenarios.
- ``report``: medians, ratios to the baselines, JSON and markdown.
- ``tokens``: JWTs minted for load; ``versions``: versions of everything measured.
"""
