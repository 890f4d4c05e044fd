"""2D image editors used by Iterative Dataset Update.

* ``base.ImageEditor``: the interface the DU loop codes against.
* ``loaders.load_editor(source, device=..., memory_mode=..., max_side=...)``: ``tiny`` | ``full-random`` | a Hugging
  Face id (``timbrooks/instruct-pix2pix``) | a local diffusers folder; ``loaders.EditorWeightsMissing`` when offline
  without weights.
* ``ip2p.InstructPix2PixEditor``: the InstructPix2Pix editor (diffusers components, the paper's DDIM schedule, 3-branch guidance).
* ``components`` (tiny / full-random builds), ``memory`` (fp32 / fp16 + CPU offload), ``clip_tokenizer`` (offline).
"""
