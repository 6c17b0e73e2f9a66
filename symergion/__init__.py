"""symergion: small local language models as junior team members, driven through plain git."""

__version__ = "0.1.0"
