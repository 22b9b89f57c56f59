"""Root module of the NAVER Cloud Functions zip: the runtime imports it and calls main(args)."""

from handler.ncp import main

__all__ = ["main"]
