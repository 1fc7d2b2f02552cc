"""Media: upload signing, transcoding, moderation and playback signing (issue 7).

Nothing here yet; the gateway does not serve media until this package has its backends.
"""
