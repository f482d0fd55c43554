"""The parts of the forward input: the Forward protocol's messages (protocol) and its handshake (security)."""
