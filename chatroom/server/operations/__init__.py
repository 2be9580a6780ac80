"""Running the server: its command line, settings, logs and metrics."""
