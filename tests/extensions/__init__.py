"""Tests of system extension images (extvisor.extensions)."""
