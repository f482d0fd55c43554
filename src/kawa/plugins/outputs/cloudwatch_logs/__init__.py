"""CloudWatch Logs output: pure batching (batcher.py) and the PutLogEvents client."""
