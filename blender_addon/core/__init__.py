"""bpy-free logic of the add-on: camera math, transforms.json I/O, orbit poses, the backend worker thread and the
client-side job state. Nothing here imports ``bpy``; tests and other tools import these modules without Blender."""
