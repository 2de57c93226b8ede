"""Operator and test tools that are not part of a node (``python -m oasis.tools.<name>``)."""
