"""Buffer plugins (`<buffer> @type memory|file`): storage backends for kawa.buffer."""
