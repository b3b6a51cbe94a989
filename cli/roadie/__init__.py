"""roadie: set up, deploy and operate a music-streaming service stack."""

__version__ = "0.1.0"
