"""The offline tier: no Docker, seconds."""
