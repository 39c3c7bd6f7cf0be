"""Operating the hub: idle culling by course limits, and the spawn probe."""
