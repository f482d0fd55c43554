"""CloudWatch Logs output (`@type cloudwatch_logs`): batching (batcher.py), lean client (client.py),
options (options.py), record handling (messages.py), sending with resumable progress (sender.py)."""

from kawa.plugins.outputs.cloudwatch_logs.plugin import CloudwatchLogsOutput, check_aws

__all__ = ["CloudwatchLogsOutput", "check_aws"]
