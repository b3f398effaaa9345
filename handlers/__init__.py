"""TorchServe hosting of the detector: the handler, the archive builder, a management CLI and a gRPC client."""
