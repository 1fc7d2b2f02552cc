"""The ``trending`` op: the videos with the most engagement in the last window.

Scores come from the clickstream (views, watch time, likes, shares: see
``gateway.clickstream.tally``), summed in a sliding window by the gateway's trending service
(``storage/trending.py``, ``storage/redis/trending.py``), overall or for one country. A client can name any video id in
its events, so only videos the store knows and that are ready are answered, with their live
totals, best first.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec

from handlers import social
from handlers.base import Context, Params, Result, operation
from handlers.errors import UNAVAILABLE, OpError
from storage.errors import Unavailable
from storage.videos import VideoStatus

MAX_TRENDING = 50
"""Videos one answer holds at most."""
EVERYONE = "*"
"""The scope of every country together."""
CANDIDATES = 2
"""Scores read per video asked for: some may name videos that are gone or not ready."""

Country = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]


class TrendingParams(Params, tag="trending"):
    country: Country | None = None
    """ISO 3166-1 alpha-2 (``KH``): only engagement from that country; absent: everyone's."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TRENDING)] = 20


@operation(TrendingParams)
async def trending(ctx: Context, params: TrendingParams) -> Result:
    """The best videos of the window, each with its score and live totals."""
    view = ctx.services.trending
    if view is None:
        raise OpError(UNAVAILABLE, "trending is not available on this node")
    scope = params.country or EVERYONE
    try:
        ranked = await view.top(scope, params.limit * CANDIDATES)
    except (Unavailable, OSError, TimeoutError) as exc:
        raise OpError(UNAVAILABLE, "trending cannot be read right now; retry") from exc
    videos = await asyncio.gather(*(social.load_video(ctx, video_id) for video_id, _ in ranked))
    ready = [
        (video, score)
        for (_video_id, score), video in zip(ranked, videos, strict=True)
        if video is not None and video.status is VideoStatus.READY
    ][: params.limit]
    totals = await asyncio.gather(*(social.live_counts(ctx, video) for video, _ in ready))
    return {
        "country": params.country,
        "window_seconds": int(view.window),
        "videos": [
            {**social.video_fields(video, counts), "score": round(score, 3)}
            for (video, score), counts in zip(ready, totals, strict=True)
        ],
    }
