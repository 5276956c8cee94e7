"""Authentication: API clients, tokens, tracking sources."""
