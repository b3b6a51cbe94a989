"""Rolling deploys: plan (pure batches), balancer, lock, audit, and the engine that runs them."""
