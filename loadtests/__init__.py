"""Load tests (Locust) and benchmarks of every serving path: web app, TorchServe REST and gRPC, naive baseline."""
