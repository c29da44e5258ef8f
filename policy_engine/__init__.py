"""policy_engine: broadcast-compliance and watershed policy engine.

The package is layered so that importing it is cheap: heavy libraries (torch, av,
transformers) are imported only by the modules that need them (media/, models/).
"""

__version__ = "0.1.0"
