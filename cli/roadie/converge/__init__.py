"""Converge: Ansible runs of the roles, with per-host recaps and secrets by environment."""
