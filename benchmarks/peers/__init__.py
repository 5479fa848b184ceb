"""Adapters that wrap other projects' diffusion models as diffbits denoisers and schedules."""
