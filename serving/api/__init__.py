"""The front doors: the ASGI app and uvicorn server for REST, the gRPC servicers and server, auth."""
