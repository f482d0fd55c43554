"""kawa: a Fluentd-compatible log collector that ships every line to AWS CloudWatch Logs."""

__version__ = "0.1.0"
