"""Wire `loadbalance`: a weighted policy reads its file once here, so that a bad file stops the
configuration (a missing one does not while it is to be looked at again, as in CoreDNS)."""

from __future__ import annotations

import logging
import os

from interkube.pkg.filewatch import WatchedFile
from interkube.plugin.setup import SetupContext
from interkube.plugins.loadbalance.handler import LoadbalanceHandler, WeightedHandler
from interkube.plugins.loadbalance.parse import LoadbalanceConfig
from interkube.plugins.loadbalance.weights import WeightFileError, Weights, parse_weights

log = logging.getLogger("interkube.plugin.loadbalance")


def setup(cfg: LoadbalanceConfig, ctx: SetupContext) -> LoadbalanceHandler:
    if cfg.policy != "weighted":
        return LoadbalanceHandler(cfg.prefer)
    assert cfg.weight_file is not None
    # Relative to the working directory, as CoreDNS resolves it when no `root` is set.
    path = os.path.abspath(cfg.weight_file)
    watched: WatchedFile[Weights] = WatchedFile(
        path, lambda raw: parse_weights(raw.decode("utf-8", errors="replace"), path), log)
    try:
        weights = watched.read()
    except FileNotFoundError as exc:
        if cfg.reload <= 0:
            raise ctx.error(f"cannot read weight file {path}: {exc.strerror or exc}") from exc
        log.warning("weight file %s does not exist; every address weighs 1 until it does "
                    "(looked at again every %gs)", path, cfg.reload)
        watched.unreadable = True
        weights = {}
    except OSError as exc:
        raise ctx.error(f"cannot read weight file {path}: {exc.strerror or exc}") from exc
    except WeightFileError as exc:
        raise ctx.error(str(exc)) from exc
    handler = WeightedHandler(watched, weights, cfg.reload)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler
