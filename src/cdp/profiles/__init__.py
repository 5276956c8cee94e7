"""Customer profiles: identities found by blind index, traits encrypted per field."""
