"""The procedural world: offices seen by random cameras, and people to put in them (numpy, HWC, no torch)."""

from __future__ import annotations

from fgdepth.synth.people import render_person
from fgdepth.synth.room import render_room

__all__ = ["render_person", "render_room"]
