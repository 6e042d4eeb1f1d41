"""The engine as a service: ``python main.py serve`` runs the registry and runner behind an HTTP + WebSocket API
(FastAPI on uvicorn), so the editor on a laptop can fill with the models of a GPU machine.

- ``jobs.py``: the job queue (one per device, bounded backlog, a worker thread running ``engine.runner``);
- ``app.py``: the HTTP/WebSocket API and its limits (token, upload bytes and pixels, models by name only);
- ``wire.py``: what crosses the wire (model schemas, progress events, previews), shared by server and client;
- ``client.py``: a blocking client (the editor's worker thread and the tests use it);
- ``cli.py``: the ``serve`` command.

Kept cheap to import: the registry imports every package under engine/.
"""
