"""Training of the rescaling flow (BDFlow's losses, Eq. 4, 7-11); not needed to
encode or decode.  `python -m rescodec.training --help`."""
