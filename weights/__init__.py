"""The shipped models and their registry (manifest.json): this folder installs
as the package rescodec.models, so a wheel carries them."""
