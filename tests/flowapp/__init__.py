"""A tiny installed app whose ``flows`` module holds the flows of the worker-mode tests."""
