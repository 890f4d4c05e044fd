"""The headless demo run by ``python3 build.py demo`` (in the Blender environment)."""
