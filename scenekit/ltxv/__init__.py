"""The LTX-Video 0.9.x model family (13B and 2B, 0.9.8) through diffusers."""
