"""mtrl: multi-task reinforcement learning."""
__version__ = "0.1.0"
