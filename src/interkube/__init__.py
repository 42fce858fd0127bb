"""interkube: connect Kubernetes clusters (multi-cluster DNS, address plans, deployment)."""


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed package's metadata when first asked for: a server
    started with -quiet never asks, and importlib.metadata's lookup (a walk of sys.path's
    distributions) is a few ms of every start (issue 18, goal 4)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("interkube")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found  # asked once: from now on an attribute like any other
    return found
