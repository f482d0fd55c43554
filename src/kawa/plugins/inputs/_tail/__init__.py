"""Parts of the `tail` input (Fluentd in_tail): pos_file, file watching, line reading.

The plugin itself is kawa.plugins.inputs.tail (the module name must be the @type).
"""
