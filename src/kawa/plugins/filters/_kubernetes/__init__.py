"""Private helpers of the kubernetes_metadata filter: API client, bounded caches, watch threads.

Nothing here is a plugin; the filter module wires these together.
"""
