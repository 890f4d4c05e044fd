"""in2n-blender compute backend: scene reconstruction (nerfstudio nerfacto), Iterative Dataset Update with an
InstructPix2Pix editor, exports, and the ZeroMQ server that Blender talks to."""
