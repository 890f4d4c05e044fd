"""3D-consistency benchmark: does Iterative Dataset Update turn view-inconsistent 2D edits into a consistent 3D edit?

A procedural Blender scene gives ground truth: the "edit" recolours one object, so the edited scene can be rendered
from any camera. A *simulated* editor (:mod:`backend.editing.simulated`, clearly not InstructPix2Pix) returns SDEdit-like
blends towards the ground-truth edited views with per-call inconsistencies. The runner (:mod:`.run`) compares
Iterative DU, one-shot editing and no edit on held-out cameras (:mod:`.metrics`).

Steps::

    <blender env python> -m benchmarks.consistency.render_dataset --out DATA       # Cycles renders (~1 min, CPU)
    <backend env python> -m benchmarks.consistency.run --data DATA --device cuda   # NeRFs + metrics + plot
"""
