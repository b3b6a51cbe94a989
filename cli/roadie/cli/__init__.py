"""Thin Click commands: parse, confirm, print. The work is done elsewhere."""
