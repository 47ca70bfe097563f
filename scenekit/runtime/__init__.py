"""How loaded models run: speed policies (compilation, fp8 compute) and the compile cache.

The runtime knows nothing of model families: it works on any diffusers model that declares its
repeated blocks (`_repeated_blocks`), which every transformer scenekit loads does.
"""
