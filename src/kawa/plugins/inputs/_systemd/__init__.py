"""What the systemd input needs of libsystemd (kawa.plugins.inputs._systemd.journal)."""
