"""The scene spec: its models, loading, templating and resolution."""
