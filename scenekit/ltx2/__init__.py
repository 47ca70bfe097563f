"""LTX-2 through diffusers: the generation recipe, the model pool, the ops, and tiny test weights."""
