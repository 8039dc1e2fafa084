"""The pure ML engine: no Django here (the RunPod image carries it alone)."""
