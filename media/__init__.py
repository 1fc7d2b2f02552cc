"""Media: upload signing, transcoding, moderation and playback signing, behind one interface.

Map of the package:
- ``model``: video states and their allowed changes, the records, the :class:`~media.model.Ledger`
  protocol the gateway implements (video records + owner pushes) and the
  :class:`~media.model.MediaBackend` protocol both backends implement.
- ``keys``: the bucket/folder layout and the accepted content types; parsing of upload keys.
- ``errors``: failures with a stable meaning, mapped to client error codes by the gateway.
- ``signing``: the local backend's HMAC upload policies and playback tokens.
- ``ffmpeg``: probe and the one-run HLS ladder + thumbnail + watermark transcode.
- ``local``: the embedded backend (folder, gateway-signed forms and links, ffmpeg workers).
- ``aws``: S3 presigned POST, the SQS-fed worker, MediaConvert, Rekognition, CloudFront links.
- ``mediaconvert``: the MediaConvert job template. ``cloudfront``: signed URLs and cookies.
- ``aws_lambda``: the upload step as a plain Lambda handler.

Media imports nothing above it (no gateway, handlers or storage): the gateway passes each
backend a ledger, and maps media errors onto its error codes.
"""
