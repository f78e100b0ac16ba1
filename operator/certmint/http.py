"""The operator's HTTP endpoint: /metrics for Prometheus, /healthz (liveness) and /readyz (readiness)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from certmint.metrics import REGISTRY


async def start_http_server(port: int, *, is_alive: Callable[[], bool], is_ready: Callable[[], bool]) -> web.AppRunner:
    async def metrics(request: web.Request) -> web.Response:
        # ?name[]=certmint_leader&name[]=...: only those metrics, as prometheus_client's own handler offers (a
        # probe or a benchmark polling a few gauges need not collect three series per Certificate).
        names = request.query.getall("name[]", [])
        registry = REGISTRY.restricted_registry(names) if names else REGISTRY
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n") if is_alive() else web.Response(status=503, text="workers stopped\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n") if is_ready() else web.Response(status=503, text="starting\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
