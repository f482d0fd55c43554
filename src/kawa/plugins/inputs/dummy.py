"""`@type dummy`: Fluentd's old name for the sample input (lookup imports this module by name)."""

from kawa.plugins.inputs.sample import SampleInput

__all__ = ["SampleInput"]
