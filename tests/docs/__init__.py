"""The user documentation, checked against the real code."""
