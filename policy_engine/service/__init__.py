"""The HTTP service (FastAPI): a thin skin over the same Python API as the CLI.

``app.py`` builds the application; ``auth.py`` says who is calling and what they may
do; ``problems.py`` turns every error into an RFC 9457 problem document. Scanning never
happens here: work reaches the ingest workers through the database.
"""
