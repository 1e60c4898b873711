"""grambot's benchmark suite: each benchmark measures grambot and a baseline doing the same work
in the same run (interleaved), and reports the ratio. Run it with `python -m bench`."""
