"""Clickstream: event intake, the bounded buffer, the file and Kinesis sinks (issue 15)."""
