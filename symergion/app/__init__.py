"""The application layer: one sync pass, the watch loop, the repository lock, engines built from
the config, the demo and the environment check; the CLI calls these and core does the work."""
